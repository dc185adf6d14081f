"""Users, folders, files, downloads and Box's documented errors, through box_sdk_gen against the emulator."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from box_sdk_gen import (
    BoxAPIError,
    BoxClient,
    BoxJWTAuth,
    CopyFileParent,
    CopyFolderParent,
    CreateFolderParent,
    FolderFull,
    GetFolderItemsDirection,
    GetFolderItemsSort,
    JWTConfig,
    NetworkSession,
    PreflightFileUploadCheckParent,
    UpdateFileByIdParent,
    UpdateFolderByIdParent,
    UploadFileAttributes,
    UploadFileAttributesParentField,
    UploadFileVersionAttributes,
)

from boxfs.emulator import BoxEmulator

from .helpers import TokenFactory, api_error, conflict_ids, upload


def names(entries: list[Any]) -> list[str]:
    return [e.name for e in entries]


# -- users -------------------------------------------------------------------------------------------------


def test_users_api(admin_client: BoxClient, alice_id: str, bob_id: str) -> None:
    found = admin_client.users.get_users(filter_term="alice@")  # the session's other tests make alice-... users
    assert [u.id for u in found.entries] == [alice_id]
    assert found.entries[0].login == "alice@example.com"
    page = admin_client.users.get_users(limit=1000)
    everyone = {u.id for u in page.entries}
    while len(everyone) < page.total_count:  # the session's other tests make many users: page through
        page = admin_client.users.get_users(limit=1000, offset=len(everyone))
        assert page.entries, "a page short of total_count"
        everyone |= {u.id for u in page.entries}
    assert {alice_id, bob_id} <= everyone
    carol = admin_client.users.create_user("Carol", login="carol@example.com")
    assert carol.login == "carol@example.com" and carol.name == "Carol"
    assert [u.id for u in admin_client.users.get_users(filter_term="carol@").entries] == [carol.id]
    # the new user works at once through As-User and has an empty private root
    as_carol = admin_client.with_as_user_header(carol.id)
    assert as_carol.users.get_user_me().id == carol.id
    assert as_carol.folders.get_folder_items("0").total_count == 0
    # a login can only exist once
    api_error(lambda: admin_client.users.create_user("Carol 2", login="carol@example.com"), 409)


def test_as_user_acts_as_that_user(alice_client: BoxClient, bob_client: BoxClient, alice_id: str, bob_id: str) -> None:
    assert alice_client.users.get_user_me().id == alice_id
    assert bob_client.users.get_user_me().id == bob_id


def test_each_root_is_private(alice_client: BoxClient, bob_client: BoxClient, workdir: FolderFull) -> None:
    secret = upload(alice_client, workdir.id, "secret.txt", b"alice only")
    root_alice = alice_client.folders.get_folder_by_id("0")
    root_bob = bob_client.folders.get_folder_by_id("0")
    assert root_alice.id == root_bob.id == "0"
    assert workdir.id in {e.id for e in alice_client.folders.get_folder_items("0", limit=1000).entries}
    assert workdir.id not in {e.id for e in bob_client.folders.get_folder_items("0", limit=1000).entries}
    api_error(lambda: bob_client.folders.get_folder_by_id(workdir.id), 404, "not_found")
    api_error(lambda: bob_client.files.get_file_by_id(secret.id), 404, "not_found")
    api_error(lambda: bob_client.downloads.download_file(secret.id), 404, "not_found")
    api_error(lambda: bob_client.folders.create_folder("x", CreateFolderParent(id=workdir.id)), 404, "not_found")
    api_error(lambda: bob_client.files.delete_file_by_id(secret.id), 404, "not_found")
    assert alice_client.files.get_file_by_id(secret.id).id == secret.id  # still there


# -- folders -----------------------------------------------------------------------------------------------


def test_folder_create_get_fields(alice_client: BoxClient, workdir: FolderFull) -> None:
    folder = alice_client.folders.create_folder("Reports", CreateFolderParent(id=workdir.id))
    assert folder.type.value == "folder" and folder.name == "Reports"
    assert folder.parent.id == workdir.id
    full = alice_client.folders.get_folder_by_id(folder.id)
    assert [e.id for e in full.path_collection.entries] == ["0", workdir.id]
    assert full.item_collection.total_count == 0
    assert full.created_at is not None and full.modified_at is not None
    # fields: the mini representation plus what was asked for, nothing else
    partial = alice_client.folders.get_folder_by_id(folder.id, fields=["name", "size"])
    raw = partial.raw_data
    assert raw["id"] == folder.id and raw["type"] == "folder" and raw["name"] == "Reports"
    assert raw["size"] == 0
    assert "created_at" not in raw and "path_collection" not in raw and "item_collection" not in raw


def test_folder_rename_move_copy_delete(alice_client: BoxClient, workdir: FolderFull) -> None:
    a = alice_client.folders.create_folder("a", CreateFolderParent(id=workdir.id))
    b = alice_client.folders.create_folder("b", CreateFolderParent(id=workdir.id))
    inner = upload(alice_client, a.id, "inner.txt", b"inner data")
    renamed = alice_client.folders.update_folder_by_id(a.id, name="a2")
    assert renamed.name == "a2" and renamed.id == a.id
    moved = alice_client.folders.update_folder_by_id(a.id, parent=UpdateFolderByIdParent(id=b.id))
    assert moved.parent.id == b.id
    assert [e.id for e in alice_client.folders.get_folder_by_id(a.id).path_collection.entries] == [
        "0",
        workdir.id,
        b.id,
    ]
    moved_file = alice_client.files.get_file_by_id(inner.id, fields=["path_collection"])
    assert [e.id for e in moved_file.path_collection.entries] == ["0", workdir.id, b.id, a.id]
    # copy is recursive and gets new ids
    copy = alice_client.folders.copy_folder(a.id, CopyFolderParent(id=workdir.id), name="a-copy")
    assert copy.id != a.id and copy.name == "a-copy"
    copied_items = alice_client.folders.get_folder_items(copy.id).entries
    assert names(copied_items) == ["inner.txt"] and copied_items[0].id != inner.id
    # a folder cannot be moved into itself
    with pytest.raises(BoxAPIError) as info:
        alice_client.folders.update_folder_by_id(b.id, parent=UpdateFolderByIdParent(id=a.id))
    assert info.value.response_info.status_code in (400, 403)  # Box: bad_request / not allowed
    # non-recursive delete of a non-empty folder: 400 folder_not_empty
    api_error(lambda: alice_client.folders.delete_folder_by_id(b.id), 400, "folder_not_empty")
    alice_client.folders.delete_folder_by_id(b.id, recursive=True)
    api_error(lambda: alice_client.folders.get_folder_by_id(b.id), 404)
    api_error(lambda: alice_client.folders.get_folder_by_id(a.id), 404)
    api_error(lambda: alice_client.files.get_file_by_id(inner.id), 404)
    assert names(alice_client.folders.get_folder_items(workdir.id).entries) == ["a-copy"]
    # the copy is independent of the deleted original
    assert alice_client.downloads.download_file(copied_items[0].id).read() == b"inner data"


def test_sort_and_direction(alice_client: BoxClient, workdir: FolderFull) -> None:
    for name in ("beta", "alpha"):
        alice_client.folders.create_folder(name, CreateFolderParent(id=workdir.id))
    upload(alice_client, workdir.id, "c.txt", b"x" * 30)
    upload(alice_client, workdir.id, "b.txt", b"x" * 10)
    upload(alice_client, workdir.id, "a.txt", b"x" * 20)
    by_name = alice_client.folders.get_folder_items(workdir.id, sort=GetFolderItemsSort.NAME)
    # Box: items sorted by type first (folders before files), then by the sort field
    assert names(by_name.entries) == ["alpha", "beta", "a.txt", "b.txt", "c.txt"]
    desc = alice_client.folders.get_folder_items(
        workdir.id, sort=GetFolderItemsSort.NAME, direction=GetFolderItemsDirection.DESC
    )
    assert names(desc.entries) == ["beta", "alpha", "c.txt", "b.txt", "a.txt"]
    by_size = alice_client.folders.get_folder_items(
        workdir.id, sort=GetFolderItemsSort.SIZE, fields=["name", "size"]
    )
    files = [e for e in by_size.entries if e.type.value == "file"]
    assert names(files) == ["b.txt", "a.txt", "c.txt"]


@pytest.fixture(scope="module")
def big_folder(alice_client: BoxClient) -> tuple[str, set[str]]:
    """A folder with 1,105 items (more than one 1,000-item page), made once for the pagination tests."""
    parent = alice_client.folders.create_folder("pagination-" + str(id(alice_client)), CreateFolderParent(id="0"))
    wanted = {f"item-{i:05d}" for i in range(1105)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda n: alice_client.folders.create_folder(n, CreateFolderParent(id=parent.id)), sorted(wanted)
            )
        )
    return parent.id, wanted


def test_offset_pagination(alice_client: BoxClient, big_folder: tuple[str, set[str]]) -> None:
    folder_id, wanted = big_folder
    first = alice_client.folders.get_folder_items(folder_id, limit=1000, offset=0)
    assert first.total_count == 1105 and first.offset == 0 and first.limit == 1000
    assert len(first.entries) == 1000
    second = alice_client.folders.get_folder_items(folder_id, limit=1000, offset=1000)
    assert len(second.entries) == 105 and second.offset == 1000
    assert set(names(first.entries)) | set(names(second.entries)) == wanted
    assert not set(names(first.entries)) & set(names(second.entries))
    small = alice_client.folders.get_folder_items(folder_id, limit=7, offset=14, sort=GetFolderItemsSort.NAME)
    assert names(small.entries) == [f"item-{i:05d}" for i in range(14, 21)]
    # Box caps limit at 1000
    capped = alice_client.folders.get_folder_items(folder_id, limit=5000)
    assert len(capped.entries) == 1000


def test_marker_pagination(alice_client: BoxClient, big_folder: tuple[str, set[str]]) -> None:
    folder_id, wanted = big_folder
    seen: list[str] = []
    pages = 0
    marker = None
    while True:
        page = alice_client.folders.get_folder_items(folder_id, usemarker=True, marker=marker, limit=500)
        pages += 1
        raw = page.raw_data
        assert "total_count" not in raw and "offset" not in raw  # marker pages carry neither
        assert len(page.entries) <= 500
        seen += names(page.entries)
        marker = page.next_marker
        if not marker:
            break
        assert pages < 10
    assert pages == 3
    assert len(seen) == len(set(seen)) == 1105 and set(seen) == wanted
    full_page = alice_client.folders.get_folder_items(folder_id, usemarker=True, limit=1000)
    assert len(full_page.entries) == 1000 and full_page.next_marker


# -- files -------------------------------------------------------------------------------------------------


def test_upload_info_versions_copy_delete(alice_client: BoxClient, workdir: FolderFull) -> None:
    v1, v2 = b"first version\n" * 100, b"second version, longer\n" * 100
    modified = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    created = upload(alice_client, workdir.id, "report.txt", v1, content_modified_at=modified)
    assert created.name == "report.txt" and created.size == len(v1)
    assert created.sha_1 == hashlib.sha1(v1).hexdigest()
    assert created.parent.id == workdir.id
    fields = ["name", "sha1", "size", "etag", "sequence_id", "content_modified_at", "path_collection"]
    info = alice_client.files.get_file_by_id(created.id, fields=fields)
    assert info.sha_1 == hashlib.sha1(v1).hexdigest() and info.size == len(v1)
    assert info.content_modified_at == modified
    assert [e.id for e in info.path_collection.entries] == ["0", workdir.id]
    assert info.etag is not None and info.sequence_id is not None

    new = alice_client.uploads.upload_file_version(
        created.id, UploadFileVersionAttributes(name="report.txt"), io.BytesIO(v2), if_match=info.etag
    ).entries[0]
    assert new.id == created.id and new.sha_1 == hashlib.sha1(v2).hexdigest() and new.size == len(v2)
    after = alice_client.files.get_file_by_id(created.id, fields=fields)
    assert after.etag != info.etag
    assert alice_client.downloads.download_file(created.id).read() == v2

    # If-Match with a stale etag: 412 on version upload, update and delete
    api_error(
        lambda: alice_client.uploads.upload_file_version(
            created.id, UploadFileVersionAttributes(name="report.txt"), io.BytesIO(b"x"), if_match=info.etag
        ),
        412,
        "precondition_failed",
    )
    api_error(lambda: alice_client.files.update_file_by_id(created.id, name="y.txt", if_match=info.etag), 412)
    api_error(lambda: alice_client.files.delete_file_by_id(created.id, if_match=info.etag), 412)

    copy = alice_client.files.copy_file(created.id, CopyFileParent(id=workdir.id), name="copy.txt")
    assert copy.id != created.id and copy.sha_1 == new.sha_1 and copy.name == "copy.txt"
    renamed = alice_client.files.update_file_by_id(created.id, name="renamed.txt", if_match=after.etag)
    assert renamed.name == "renamed.txt"
    sub = alice_client.folders.create_folder("sub", CreateFolderParent(id=workdir.id))
    moved = alice_client.files.update_file_by_id(created.id, parent=UpdateFileByIdParent(id=sub.id))
    assert moved.parent.id == sub.id
    alice_client.files.delete_file_by_id(created.id)
    api_error(lambda: alice_client.files.get_file_by_id(created.id), 404)
    assert alice_client.downloads.download_file(copy.id).read() == v2


def test_file_versions(alice_client: BoxClient, workdir: FolderFull) -> None:
    v1, v2 = b"version one", b"version two!"
    created = upload(alice_client, workdir.id, "versioned.txt", v1)
    assert alice_client.file_versions.get_file_versions(created.id).total_count == 0
    alice_client.uploads.upload_file_version(
        created.id, UploadFileVersionAttributes(name="versioned.txt"), io.BytesIO(v2)
    )
    versions = alice_client.file_versions.get_file_versions(created.id, fields=["sha1", "size"])
    assert versions.total_count == 1  # the previous version; the current one is not listed
    assert versions.entries[0].sha_1 == hashlib.sha1(v1).hexdigest() and versions.entries[0].size == len(v1)
    assert "created_at" not in versions.raw_data["entries"][0]  # fields: mini representation + what was asked
    full = alice_client.file_versions.get_file_versions(created.id)  # the standard fields, schema-checked
    assert full.entries[0].type.value == "file_version"


def test_upload_checks_sha1(alice_client: BoxClient, workdir: FolderFull) -> None:
    data = b"checked content"
    files = alice_client.uploads.upload_file(
        UploadFileAttributes(name="good.txt", parent=UploadFileAttributesParentField(id=workdir.id)),
        io.BytesIO(data),
        content_md_5=hashlib.sha1(data).hexdigest(),
    )
    good = files.entries[0]
    assert good.sha_1 == hashlib.sha1(data).hexdigest()
    with pytest.raises(BoxAPIError) as info:
        alice_client.uploads.upload_file(
            UploadFileAttributes(name="bad.txt", parent=UploadFileAttributesParentField(id=workdir.id)),
            io.BytesIO(data),
            content_md_5=hashlib.sha1(b"something else").hexdigest(),
        )
    assert 400 <= info.value.response_info.status_code < 500
    assert names(alice_client.folders.get_folder_items(workdir.id).entries) == ["good.txt"]


def test_download_whole_and_range(alice_client: BoxClient, workdir: FolderFull) -> None:
    data = bytes(range(256)) * 40
    created = upload(alice_client, workdir.id, "bytes.bin", data)
    assert alice_client.downloads.download_file(created.id).read() == data
    assert alice_client.downloads.download_file(created.id, range="bytes=100-299").read() == data[100:300]
    assert alice_client.downloads.download_file(created.id, range="bytes=10000-").read() == data[10000:]
    assert alice_client.downloads.download_file(created.id, range="bytes=-16").read() == data[-16:]
    url = alice_client.downloads.get_download_file_url(created.id)
    assert "/download/" in url


def test_preflight(alice_client: BoxClient, workdir: FolderFull) -> None:
    ok = alice_client.uploads.preflight_file_upload_check(
        name="new.txt", size=1234, parent=PreflightFileUploadCheckParent(id=workdir.id)
    )
    assert ok.upload_url and "/files/content" in ok.upload_url
    existing = upload(alice_client, workdir.id, "Taken.txt", b"1")
    error = api_error(
        lambda: alice_client.uploads.preflight_file_upload_check(
            name="taken.TXT", size=1, parent=PreflightFileUploadCheckParent(id=workdir.id)
        ),
        409,
        "item_name_in_use",
    )
    assert existing.id in conflict_ids(error)
    api_error(
        lambda: alice_client.uploads.preflight_file_upload_check(
            name="x.txt", size=1, parent=PreflightFileUploadCheckParent(id="987654321")
        ),
        404,
    )


# -- documented errors -------------------------------------------------------------------------------------


def test_name_in_use_is_case_insensitive(alice_client: BoxClient, workdir: FolderFull) -> None:
    folder = alice_client.folders.create_folder("Shared Docs", CreateFolderParent(id=workdir.id))
    error = api_error(
        lambda: alice_client.folders.create_folder("shared docs", CreateFolderParent(id=workdir.id)),
        409,
        "item_name_in_use",
    )
    assert folder.id in conflict_ids(error)
    file = upload(alice_client, workdir.id, "Notes.md", b"n")
    error = api_error(lambda: upload(alice_client, workdir.id, "NOTES.md", b"m"), 409, "item_name_in_use")
    assert file.id in conflict_ids(error)
    # a file and a folder cannot share a name either
    api_error(lambda: upload(alice_client, workdir.id, "SHARED DOCS", b"m"), 409, "item_name_in_use")
    # renaming onto an existing name conflicts too
    other = alice_client.folders.create_folder("other", CreateFolderParent(id=workdir.id))
    api_error(
        lambda: alice_client.folders.update_folder_by_id(other.id, name="Shared docs"), 409, "item_name_in_use"
    )


def test_not_found(alice_client: BoxClient) -> None:
    api_error(lambda: alice_client.folders.get_folder_by_id("987654321"), 404, "not_found")
    api_error(lambda: alice_client.files.get_file_by_id("987654321"), 404, "not_found")
    api_error(lambda: alice_client.folders.get_folder_items("987654321"), 404, "not_found")
    api_error(lambda: alice_client.downloads.download_file("987654321"), 404, "not_found")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("a/b", "item_name_invalid"),
        ("a\\b", "item_name_invalid"),
        (".", "item_name_invalid"),
        ("..", "item_name_invalid"),
        ("trailing ", "item_name_invalid"),
        ("del\x7fchar", "item_name_invalid"),
        ("nul\x00char", "item_name_invalid"),
        ("new\nline", "item_name_invalid"),
        ("tab\tchar", "item_name_invalid"),
        ("unit\x1fsep", "item_name_invalid"),
        ("not-utf8-\udcff", "item_name_invalid"),
        ("", None),
        ("x" * 256, "item_name_too_long"),
    ],
)
def test_bad_names(alice_client: BoxClient, workdir: FolderFull, name: str, code: str | None) -> None:
    api_error(lambda: alice_client.folders.create_folder(name, CreateFolderParent(id=workdir.id)), 400, code)
    api_error(lambda: upload(alice_client, workdir.id, name, b"x"), 400, code)


def test_longest_name_is_fine(alice_client: BoxClient, workdir: FolderFull) -> None:
    name = "y" * 255
    assert alice_client.folders.create_folder(name, CreateFolderParent(id=workdir.id)).name == name


@pytest.mark.parametrize("name", [" leading space", "caf\u00e9 \u2603 [x] *?", "\u00a0nbsp\u00a0"])
def test_names_box_accepts(alice_client: BoxClient, workdir: FolderFull, name: str) -> None:
    """A leading space is accepted (only a trailing one is refused; docs/emulator.md), and so is any
    printable Unicode, glob characters included."""
    assert alice_client.folders.create_folder(name, CreateFolderParent(id=workdir.id)).name == name
    assert upload(alice_client, workdir.id, name + ".txt", b"x").name == name + ".txt"


def test_as_user_without_scope_is_403(
    emulator: BoxEmulator, network_session: NetworkSession, alice_id: str
) -> None:
    """Without the "perform actions as users" feature, Box refuses As-User with 403 ``insufficient_scope``
    (the code Box's reference lists for a missing application scope) and says so in WWW-Authenticate."""
    no_feature = emulator.create_jwt_app(scopes=("root_readwrite",), as_user_header=False, enterprise_access=True)
    client = BoxClient(
        auth=BoxJWTAuth(config=JWTConfig.from_config_json_string(no_feature)), network_session=network_session
    )
    client.users.get_user_me()  # the app itself works
    for call in (
        lambda: client.with_as_user_header(alice_id).users.get_user_me(),
        lambda: client.with_as_user_header(alice_id).folders.get_folder_items("0"),
    ):
        error = api_error(call, 403, "insufficient_scope")
        assert "insufficient_scope" in error.response_info.headers.get("WWW-Authenticate", "")


def test_as_user_without_enterprise_access_is_403(
    emulator: BoxEmulator, network_session: NetworkSession, alice_id: str
) -> None:
    app_only = emulator.create_jwt_app(scopes=("root_readwrite",), as_user_header=True, enterprise_access=False)
    client = BoxClient(
        auth=BoxJWTAuth(config=JWTConfig.from_config_json_string(app_only)), network_session=network_session
    )
    client.users.get_user_me()
    api_error(
        lambda: client.with_as_user_header(alice_id).users.get_user_me(),
        403,
        "access_denied_insufficient_permissions",
    )


# -- more of Box's documented details ------------------------------------------------------------------------


def test_root_folder(alice_client: BoxClient) -> None:
    root = alice_client.folders.get_folder_by_id("0")
    assert root.name == "All Files" and root.parent is None
    assert root.path_collection.total_count == 0 and root.path_collection.entries == []
    assert root.item_collection is not None  # a folder's first page of items comes with it


def test_default_page_size_and_item_fields(alice_client: BoxClient, big_folder: tuple[str, set[str]]) -> None:
    folder_id, _ = big_folder
    page = alice_client.folders.get_folder_items(folder_id)
    assert page.limit == 100 and len(page.entries) == 100  # Box's default limit
    with_fields = alice_client.folders.get_folder_items(folder_id, limit=3, fields=["name", "modified_at"])
    for raw in with_fields.raw_data["entries"]:
        assert raw["type"] == "folder" and raw["id"] and raw["name"] and raw["modified_at"]
        assert "created_at" not in raw and "description" not in raw
    folder = alice_client.folders.get_folder_by_id(folder_id)
    assert folder.item_collection.total_count == 1105 and len(folder.item_collection.entries) == 100


def test_version_download_and_conflicting_copy_move(alice_client: BoxClient, workdir: FolderFull) -> None:
    v1, v2 = b"old bytes", b"new bytes!"
    file = upload(alice_client, workdir.id, "doc.txt", v1)
    old_version = alice_client.files.get_file_by_id(file.id, fields=["file_version"]).file_version.id
    alice_client.uploads.upload_file_version(file.id, UploadFileVersionAttributes(name="doc.txt"), io.BytesIO(v2))
    assert alice_client.files.get_file_by_id(file.id, fields=["file_version"]).file_version.id != old_version
    assert alice_client.downloads.download_file(file.id, version=old_version).read() == v1
    assert alice_client.downloads.download_file(file.id).read() == v2
    # a copy or move onto a taken name is a conflict
    api_error(lambda: alice_client.files.copy_file(file.id, CopyFileParent(id=workdir.id)), 409, "item_name_in_use")
    sub = alice_client.folders.create_folder("sub", CreateFolderParent(id=workdir.id))
    upload(alice_client, sub.id, "DOC.txt", b"other")
    api_error(
        lambda: alice_client.files.update_file_by_id(file.id, parent=UpdateFileByIdParent(id=sub.id)),
        409,
        "item_name_in_use",
    )
    # uploading into a folder that does not exist
    api_error(lambda: upload(alice_client, "987654321", "x.txt", b"x"), 404)


def _etag_roundtrip(
    emulator: BoxEmulator, http: requests.Session, token: str, kind: str, item_id: str, rename: dict
) -> None:
    """GET with If-None-Match: 304 while unchanged, 200 with a new etag after a change; stale If-Match: 412."""
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{emulator.url}/2.0/{kind}/{item_id}"
    first = http.get(url, headers=headers).json()
    unchanged = http.get(url, headers=headers | {"If-None-Match": first["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert http.put(url, headers=headers, json=rename).status_code == 200
    changed = http.get(url, headers=headers | {"If-None-Match": first["etag"]})
    assert changed.status_code == 200 and changed.json()["etag"] != first["etag"]
    stale = http.delete(url, headers=headers | {"If-Match": first["etag"]})
    assert stale.status_code == 412 and stale.json()["code"] == "precondition_failed"


def test_if_none_match_file(
    emulator: BoxEmulator,
    http: requests.Session,
    token_for: TokenFactory,
    alice_client: BoxClient,
    alice_id: str,
    workdir: FolderFull,
) -> None:
    file = upload(alice_client, workdir.id, "etag.txt", b"e")
    _etag_roundtrip(emulator, http, token_for(alice_id), "files", file.id, {"name": "etag2.txt"})


def test_if_none_match_folder(
    emulator: BoxEmulator,
    http: requests.Session,
    token_for: TokenFactory,
    alice_client: BoxClient,
    alice_id: str,
    workdir: FolderFull,
) -> None:
    folder = alice_client.folders.create_folder("etag-folder", CreateFolderParent(id=workdir.id))
    _etag_roundtrip(emulator, http, token_for(alice_id), "folders", folder.id, {"name": "etag-folder-2"})


def test_as_user_cannot_name_the_caller_itself(admin_client: BoxClient) -> None:
    """Box: the As-User header cannot carry the authenticated user's own id (403)."""
    me = admin_client.users.get_user_me().id
    api_error(lambda: admin_client.with_as_user_header(me).users.get_user_me(), 403)


def test_concurrent_uploads_of_one_name(alice_client: BoxClient, workdir: FolderFull) -> None:
    """Name uniqueness holds under concurrency: of 8 simultaneous uploads of one name, exactly one wins."""

    def attempt(i: int) -> int:
        try:
            upload(alice_client, workdir.id, "race.txt", f"contender {i}".encode())
            return 201
        except BoxAPIError as error:
            assert error.response_info.code == "item_name_in_use"
            return error.response_info.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(attempt, range(8)))
    assert statuses == [201] + [409] * 7
    assert names(alice_client.folders.get_folder_items(workdir.id).entries) == ["race.txt"]
