import fsspec.tests.abstract as abstract

from .box_fixtures import BoxFixtures


class TestBoxCopy(abstract.AbstractCopyTests, BoxFixtures):
    pass
