import fsspec.tests.abstract as abstract

from .box_fixtures import BoxFixtures


class TestBoxOpen(abstract.AbstractOpenTests, BoxFixtures):
    pass
