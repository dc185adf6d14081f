import fsspec.tests.abstract as abstract

from .box_fixtures import BoxFixtures


class TestBoxGet(abstract.AbstractGetTests, BoxFixtures):
    pass
