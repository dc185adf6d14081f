import fsspec.tests.abstract as abstract

from .box_fixtures import BoxFixtures


class TestBoxPipe(abstract.AbstractPipeTests, BoxFixtures):
    pass
