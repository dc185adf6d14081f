"""The per-filesystem item and listing cache, on its own (no server needed)."""

from __future__ import annotations

import time

from boxfs.dircache import BoxDirCache


def item(path: str, kind: str = "file", id_: str = "1") -> dict:
    return {"name": path, "type": kind, "id": id_}


def test_keys_are_case_insensitive_and_items_keep_their_spelling() -> None:
    c = BoxDirCache()
    c.set_listing("", [item("Reports", "directory", "10")])
    assert c.get("reports")["name"] == "Reports"
    assert c.known_missing("other") and not c.known_missing("REPORTS")
    assert not c.known_missing("reports/x")  # reports itself not listed: unknown, not missing


def test_removed_takes_descendants_and_parent_entry() -> None:
    c = BoxDirCache()
    c.set_listing("", [item("a", "directory", "1")])
    c.set_listing("a", [item("a/b", "directory", "2")])
    c.set_listing("a/b", [item("a/b/f", "file", "3")])
    c.removed("a/b")
    assert c.get("a/b") is None and c.get("a/b/f") is None and c.listing("a/b") is None
    assert c.listing("a") == [] and c.known_missing("a/b")


def test_moved_folder_is_relisted_and_created_folder_is_known_empty() -> None:
    c = BoxDirCache()
    c.set_listing("", [item("src", "directory", "1")])
    c.set_listing("src", [item("src/f", "file", "2")])
    c.moved("src", "dst", item("dst", "directory", "1"))
    assert c.get("src") is None and c.get("src/f") is None
    assert c.get("dst")["id"] == "1" and c.listing("dst") is None
    c.added("new", item("new", "directory", "5"))
    # known empty for name checks; a listing is still asked of Box (others may fill a folder we made)
    assert c.known_missing("new/x") and c.listing("new") is None
    c.added("copied", item("copied", "directory", "6"), empty=False)
    assert c.listing("copied") is None
    assert sorted(i["name"] for i in c.listing("")) == ["copied", "dst", "new"]


def test_relisting_forgets_what_vanished_or_was_replaced() -> None:
    c = BoxDirCache()
    c.set_listing("", [item("x", "directory", "1"), item("y", "file", "2")])
    c.set_listing("x", [item("x/in", "file", "3")])
    c.set_listing("", [item("x", "directory", "9")])  # x replaced by another folder, y deleted
    assert c.get("y") is None and c.get("x/in") is None and c.listing("x") is None


def test_expiry() -> None:
    c = BoxDirCache(expiry=0.05)
    c.set_listing("", [item("a")])
    assert c.get("a") is not None and c.listing("") is not None
    time.sleep(0.06)
    assert c.get("a") is None and c.listing("") is None and not c.known_missing("b")
    never = BoxDirCache(expiry=0)
    never.set_listing("", [item("a")])
    assert never.listing("") is None


def test_only_assumed_listings_are_given_up_for_a_recheck() -> None:
    c = BoxDirCache()
    c.set_listing("", [item("fetched", "directory", "1")])
    c.set_listing("fetched", [])
    c.added("made", item("made", "directory", "2"))
    assert c.known_missing("made/x") and c.known_missing("fetched/x")
    assert not c.forget_assumed_listings_above("fetched/x")
    assert c.known_missing("fetched/x")
    assert c.forget_assumed_listings_above("made/x")
    assert not c.known_missing("made/x") and c.get("made") is not None
    c.set_listing("made", [])  # fetched now: trusted from here on
    assert not c.forget_assumed_listings_above("made/x")


def test_a_listing_in_flight_does_not_undo_our_own_changes() -> None:
    c = BoxDirCache()
    c.set_listing("", [item("d", "directory", "1")])
    c.set_listing("d", [item("d/old", "file", "2"), item("d/kept", "file", "3")])
    started = time.monotonic()  # a listing of "d" is requested now; meanwhile this filesystem...
    c.added("d/new", item("d/new", "file", "4"))  # ...uploads a file,
    c.removed("d/old")  # ...deletes one,
    c.changed("d/kept", {**item("d/kept", "file", "3"), "etag": "2"})  # ...and writes a new version
    # the listing answers with the state from before those changes
    c.set_listing("d", [item("d/old", "file", "2"), {**item("d/kept", "file", "3"), "etag": "1"}],
                  started=started)
    names = sorted(i["name"] for i in c.listing("d"))
    assert names == ["d/kept", "d/new"]
    assert c.get("d/kept")["etag"] == "2" and c.get("d/old") is None
    # a listing requested after the changes is the truth again
    c.set_listing("d", [item("d/kept", "file", "3")], started=time.monotonic())
    assert [i["name"] for i in c.listing("d")] == ["d/kept"]
