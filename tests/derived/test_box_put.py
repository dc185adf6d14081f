import fsspec.tests.abstract as abstract

from .box_fixtures import BoxFixtures


class TestBoxPut(abstract.AbstractPutTests, BoxFixtures):
    pass
