"""Collaborations between two users of one enterprise, through box_sdk_gen and raw HTTP.

Alice shares a folder with Bob. Every JSON answer is checked against Box's OpenAPI description (see
conftest); what is asserted is what Box documents: Bob sees the folder in his "All Files", works in it
within his role's limits, items he creates there belong to Alice, names clash across both users, and
both streams carry the changes, each with the path as that user sees it.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

import pytest
import requests
from box_sdk_gen import (
    BoxClient,
    CreateCollaborationAccessibleBy,
    CreateCollaborationAccessibleByTypeField,
    CreateCollaborationItem,
    CreateCollaborationItemTypeField,
    CreateCollaborationRole,
    CreateFolderParent,
    FolderFull,
    GetCollaborationsStatus,
    UpdateFileByIdParent,
    UpdateFolderByIdParent,
    UploadFileVersionAttributes,
)

from boxfs.emulator import BoxEmulator

from .helpers import TokenFactory, api_error, upload


def share(owner: BoxClient, folder_id: str, user_id: str, role: str = "editor") -> Any:
    return owner.user_collaborations.create_collaboration(
        CreateCollaborationItem(type=CreateCollaborationItemTypeField.FOLDER, id=folder_id),
        CreateCollaborationAccessibleBy(type=CreateCollaborationAccessibleByTypeField.USER, id=user_id),
        CreateCollaborationRole(role),
    )


def root_names(client: BoxClient) -> set[str]:
    return {e.name for e in client.folders.get_folder_items("0", limit=1000).entries}


def names_in(client: BoxClient, folder_id: str) -> set[str]:
    return {e.name for e in client.folders.get_folder_items(folder_id).entries}


def role_of(collaboration: Any) -> str:
    """A collaboration's role as text (box_sdk_gen leaves a role its enum lacks, such as co-owner, a str)."""
    return str(getattr(collaboration.role, "value", collaboration.role))


def events_of(client: BoxClient, position: Any) -> list[Any]:
    return client.events.get_events(stream_position=str(position), limit=500).entries


def test_an_editor_sees_reads_and_writes_the_shared_folder(
        alice_client: BoxClient, bob_client: BoxClient, alice_id: str, bob_id: str, workdir: FolderFull) -> None:
    a = upload(alice_client, workdir.id, "a.txt", b"alice's")
    collab = share(alice_client, workdir.id, bob_id)
    assert collab.status.value == "accepted" and collab.role.value == "editor"
    assert collab.accessible_by.id == bob_id and collab.item.id == workdir.id
    assert collab.created_by.id == alice_id

    assert workdir.name in root_names(bob_client)
    seen = bob_client.folders.get_folder_by_id(workdir.id)
    assert seen.owned_by.id == alice_id
    assert [e.id for e in seen.path_collection.entries] == ["0"]  # from Bob's own All Files
    assert seen.parent.id == "0"
    assert {e.name for e in seen.item_collection.entries} == {"a.txt"}
    data = b"".join(bob_client.downloads.download_file(a.id))
    assert data == b"alice's"

    b = upload(bob_client, workdir.id, "b [1] *.txt", b"bob's")
    assert b.owned_by.id == alice_id and b.created_by.id == bob_id and b.modified_by.id == bob_id
    assert [e.id for e in b.path_collection.entries] == ["0", workdir.id]
    as_alice = alice_client.files.get_file_by_id(b.id)
    assert [e.id for e in as_alice.path_collection.entries] == ["0", workdir.id]
    assert as_alice.sha_1 == hashlib.sha1(b"bob's").hexdigest()
    assert names_in(alice_client, workdir.id) == {"a.txt", "b [1] *.txt"}

    sub = bob_client.folders.create_folder("sub", CreateFolderParent(id=workdir.id))
    assert sub.owned_by.id == alice_id and sub.created_by.id == bob_id
    alice_client.files.update_file_by_id(a.id, name="renamed.txt")
    assert names_in(bob_client, workdir.id) == {"renamed.txt", "b [1] *.txt", "sub"}

    listing = alice_client.list_collaborations.get_folder_collaborations(workdir.id)
    assert [c.id for c in listing.entries] == [collab.id]
    assert alice_client.list_collaborations.get_file_collaborations(a.id).entries == []  # inherited ones are not listed
    assert bob_client.user_collaborations.get_collaboration_by_id(collab.id).role.value == "editor"


def test_names_clash_across_both_users(alice_client: BoxClient, bob_client: BoxClient, bob_id: str, workdir: FolderFull) -> None:
    share(alice_client, workdir.id, bob_id)
    first = upload(alice_client, workdir.id, "Same.txt", b"1")
    error = api_error(lambda: upload(bob_client, workdir.id, "same.TXT", b"2"), 409, "item_name_in_use")
    assert error.response_info.context_info["conflicts"]["id"] == first.id
    api_error(lambda: bob_client.folders.create_folder("same.txt", CreateFolderParent(id=workdir.id)), 409, "item_name_in_use")
    assert names_in(alice_client, workdir.id) == {"Same.txt"}


@pytest.mark.parametrize("role", ["viewer", "previewer"])
def test_a_viewer_cannot_change_anything(alice_client: BoxClient, bob_client: BoxClient, bob_id: str, workdir: FolderFull,
                                         role: str) -> None:
    a = upload(alice_client, workdir.id, "a.txt", b"keep me")
    share(alice_client, workdir.id, bob_id, role)
    seen = bob_client.files.get_file_by_id(a.id, fields=["permissions"])
    assert seen.permissions.can_preview and not seen.permissions.can_upload
    assert not seen.permissions.can_delete and not seen.permissions.can_rename
    assert seen.permissions.can_download == (role == "viewer")
    folder = bob_client.folders.get_folder_by_id(workdir.id, fields=["permissions"])
    assert not folder.permissions.can_upload and not folder.permissions.can_invite_collaborator
    denied = "access_denied_insufficient_permissions"
    api_error(lambda: upload(bob_client, workdir.id, "new.txt", b"x"), 403, denied)
    api_error(lambda: bob_client.uploads.upload_file_version(a.id, UploadFileVersionAttributes(name="a.txt"),
                                                      io.BytesIO(b"overwritten")), 403, denied)
    api_error(lambda: bob_client.files.update_file_by_id(a.id, name="b.txt"), 403, denied)
    api_error(lambda: bob_client.files.delete_file_by_id(a.id), 403, denied)
    api_error(lambda: bob_client.folders.create_folder("sub", CreateFolderParent(id=workdir.id)), 403, denied)
    api_error(lambda: bob_client.folders.delete_folder_by_id(workdir.id, recursive=True), 403, denied)
    api_error(lambda: share(bob_client, workdir.id, bob_id), 403, denied)
    if role == "viewer":
        assert b"".join(bob_client.downloads.download_file(a.id)) == b"keep me"
    else:
        api_error(lambda: bob_client.downloads.download_file(a.id), 403, denied)
    after = alice_client.files.get_file_by_id(a.id)
    assert (after.name, after.sha_1, after.etag) == ("a.txt", hashlib.sha1(b"keep me").hexdigest(), a.etag)
    assert names_in(alice_client, workdir.id) == {"a.txt"}


def test_the_owner_owns_what_moves_in(emulator: BoxEmulator, alice_client: BoxClient, bob_client: BoxClient, alice_id: str, bob_id: str,
                                      workdir: FolderFull) -> None:
    share(alice_client, workdir.id, bob_id)
    mine = bob_client.folders.create_folder(f"bob-{uuid.uuid4().hex[:8]}", CreateFolderParent(id="0"))
    f = upload(bob_client, mine.id, "f.txt", b"f")
    moved = bob_client.files.update_file_by_id(f.id, parent=UpdateFileByIdParent(id=workdir.id))
    assert moved.owned_by.id == alice_id
    assert alice_client.files.get_file_by_id(f.id).name == "f.txt"
    back = bob_client.files.update_file_by_id(f.id, parent=UpdateFileByIdParent(id=mine.id))
    assert back.owned_by.id == bob_id
    api_error(lambda: alice_client.files.get_file_by_id(f.id), 404, "not_found")
    # shared content does not change owner by a move: Box asks for the new owner to be named
    sub = alice_client.folders.create_folder("sub", CreateFolderParent(id=workdir.id))
    share(alice_client, sub.id, emulator.create_user(f"carol-{uuid.uuid4().hex[:8]}@example.com"), "viewer")
    api_error(lambda: bob_client.folders.update_folder_by_id(sub.id, parent=UpdateFolderByIdParent(id=mine.id)), 400,
              "cannot_make_collaborated_subfolder_private")
    assert names_in(alice_client, workdir.id) == {"sub"}


def test_events_reach_both_users_each_with_their_own_path(
        alice_client: BoxClient, bob_client: BoxClient, alice_id: str, bob_id: str, workdir: FolderFull) -> None:
    alice_start = alice_client.events.get_events(stream_position="now").next_stream_position
    collab = share(alice_client, workdir.id, bob_id)
    bob_start = bob_client.events.get_events(stream_position="now").next_stream_position
    f = upload(bob_client, workdir.id, "x.txt", b"x")
    to_bob = [e for e in events_of(bob_client, bob_start) if e.source.id == f.id]
    to_alice = [e for e in events_of(alice_client, alice_start) if getattr(e.source, "id", None) in (f.id, workdir.id)]
    assert [e.event_type.value for e in to_bob] == ["ITEM_UPLOAD"]
    assert [e.id for e in to_bob[0].source.path_collection.entries] == ["0", workdir.id]
    assert [e.event_type.value for e in to_alice] == ["COLLAB_ADD_COLLABORATOR", "ITEM_UPLOAD"]
    assert to_alice[1].created_by.id == bob_id

    before_removal = bob_client.events.get_events(stream_position="now").next_stream_position
    alice_client.user_collaborations.delete_collaboration_by_id(collab.id)
    removed = [e for e in events_of(bob_client, before_removal) if e.source.id == workdir.id]
    assert [e.event_type.value for e in removed] == ["COLLAB_REMOVE_COLLABORATOR"]
    # the folder as Bob saw it, so a cache of his knows which place to forget
    assert [e.id for e in removed[0].source.path_collection.entries] == ["0"]
    upload(alice_client, workdir.id, "after.txt", b"y")
    assert not [e for e in events_of(bob_client, before_removal) if e.event_type.value != "COLLAB_REMOVE_COLLABORATOR"]


def test_long_poll_wakes_the_collaborator(emulator: BoxEmulator, alice_client: BoxClient, bob_client: BoxClient, bob_id: str,
                                          workdir: FolderFull, http: requests.Session) -> None:
    share(alice_client, workdir.id, bob_id)
    server = bob_client.events.get_events_with_long_polling().entries[0]
    position = bob_client.events.get_events(stream_position="now").next_stream_position
    upload(alice_client, workdir.id, "wake.txt", b"w")
    answer = http.get(f"{server.url}&stream_position={position}", timeout=30)
    assert answer.json() == {"message": "new_change"}


def test_removing_the_collaboration_ends_access(alice_client: BoxClient, bob_client: BoxClient, bob_id: str,
                                                workdir: FolderFull) -> None:
    a = upload(alice_client, workdir.id, "a.txt", b"a")
    collab = share(alice_client, workdir.id, bob_id)
    assert bob_client.files.get_file_by_id(a.id).id == a.id
    alice_client.user_collaborations.delete_collaboration_by_id(collab.id)
    api_error(lambda: bob_client.files.get_file_by_id(a.id), 404, "not_found")
    api_error(lambda: bob_client.folders.get_folder_items(workdir.id), 404, "not_found")
    api_error(lambda: upload(bob_client, workdir.id, "late.txt", b"x"), 404)
    assert workdir.name not in root_names(bob_client)
    api_error(lambda: alice_client.user_collaborations.get_collaboration_by_id(collab.id), 404, "not_found")
    assert alice_client.list_collaborations.get_folder_collaborations(workdir.id).entries == []


def test_a_collaborator_may_leave(alice_client: BoxClient, bob_client: BoxClient, bob_id: str, workdir: FolderFull) -> None:
    collab = share(alice_client, workdir.id, bob_id, "viewer")
    bob_client.user_collaborations.delete_collaboration_by_id(collab.id)
    assert workdir.name not in root_names(bob_client)


def test_role_change_takes_effect_at_once(alice_client: BoxClient, bob_client: BoxClient, bob_id: str, workdir: FolderFull) -> None:
    collab = share(alice_client, workdir.id, bob_id, "viewer")
    api_error(lambda: upload(bob_client, workdir.id, "x.txt", b"x"), 403, "access_denied_insufficient_permissions")
    api_error(lambda: bob_client.user_collaborations.update_collaboration_by_id(collab.id, role="editor"), 403)
    changed = alice_client.user_collaborations.update_collaboration_by_id(collab.id, role="editor")
    assert changed.role.value == "editor"
    assert upload(bob_client, workdir.id, "x.txt", b"x").name == "x.txt"


def test_only_an_owner_or_co_owner_grants_co_owner(emulator: BoxEmulator, admin_client: BoxClient, alice_client: BoxClient,
                                                    bob_client: BoxClient, bob_id: str, workdir: FolderFull) -> None:
    """An editor may invite, yet may not make itself or anyone co-owner, nor change or remove a co-owner:
    on Box only the owner or a co-owner may (else an editor takes over the folder)."""
    carol_id = emulator.create_user(f"carol-{uuid.uuid4().hex[:8]}@example.com")
    carol = admin_client.with_as_user_header(carol_id)
    mine = share(alice_client, workdir.id, bob_id, "editor")
    denied = "access_denied_insufficient_permissions"
    api_error(lambda: share(bob_client, workdir.id, carol_id, "co-owner"), 403, denied)
    api_error(lambda: bob_client.user_collaborations.update_collaboration_by_id(mine.id, role="co-owner"), 403, denied)
    theirs = share(bob_client, workdir.id, carol_id, "viewer")  # an editor may still invite with other roles
    api_error(lambda: bob_client.user_collaborations.update_collaboration_by_id(theirs.id, role="co-owner"), 403, denied)
    assert role_of(alice_client.user_collaborations.get_collaboration_by_id(mine.id)) == "editor"
    assert role_of(alice_client.user_collaborations.get_collaboration_by_id(theirs.id)) == "viewer"

    assert role_of(alice_client.user_collaborations.update_collaboration_by_id(theirs.id, role="co-owner")) == "co-owner"
    api_error(lambda: bob_client.user_collaborations.update_collaboration_by_id(theirs.id, role="viewer"), 403, denied)
    api_error(lambda: bob_client.user_collaborations.delete_collaboration_by_id(theirs.id), 403, denied)
    assert role_of(alice_client.user_collaborations.get_collaboration_by_id(theirs.id)) == "co-owner"
    # a co-owner may grant co-owner
    assert role_of(carol.user_collaborations.update_collaboration_by_id(mine.id, role="co-owner")) == "co-owner"


def test_bad_requests_are_refused(emulator: BoxEmulator, alice_client: BoxClient, bob_client: BoxClient, alice_id: str, bob_id: str,
                                  workdir: FolderFull, token_for: TokenFactory, http: requests.Session) -> None:
    token = token_for(alice_id)

    def post(body: dict[str, Any]) -> requests.Response:
        return http.post(emulator.url + "/2.0/collaborations", json=body, headers={"Authorization": f"Bearer {token}"})

    item = {"type": "folder", "id": workdir.id}
    bob_ref = {"type": "user", "id": bob_id}
    for body, status, code, needle in (
            ({"item": item, "accessible_by": bob_ref, "role": "boss"}, 400, "bad_request", "role"),
            ({"item": item, "accessible_by": bob_ref, "role": "owner"}, 400, "bad_request", "ownership"),
            ({"item": item, "accessible_by": bob_ref}, 400, "bad_request", "role"),
            ({"item": item, "accessible_by": {"type": "group", "id": "1"}, "role": "editor"}, 400, "bad_request", "Group"),
            ({"item": item, "accessible_by": {"type": "user", "login": "nobody@example.com"}, "role": "editor"}, 404,
             "not_found", "user"),
            ({"accessible_by": bob_ref, "role": "editor"}, 400, "invalid_collaboration_item", "item"),
            ({"item": {"type": "folder", "id": "0"}, "accessible_by": bob_ref, "role": "editor"}, 400,
             "collaborations_not_available_on_root_folder", "Root"),
            ({"item": item, "accessible_by": {"type": "user", "id": alice_id}, "role": "editor"}, 400,
             "user_already_collaborator", "already"),
            ({"item": item, "accessible_by": bob_ref, "role": "editor", "is_access_only": True}, 400, "bad_request",
             "is_access_only")):
        answer = post(body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["code"] == code and needle in answer.json()["message"], answer.text
    invalid_role = post({"item": item, "accessible_by": bob_ref, "role": "boss"}).json()
    assert invalid_role["context_info"]["errors"][0]["name"] == "role"
    by_login = post({"item": item, "accessible_by": {"type": "user", "login": "BOB@example.com"}, "role": "viewer"})
    assert by_login.status_code == 201 and by_login.json()["accessible_by"]["id"] == bob_id
    again = post({"item": item, "accessible_by": bob_ref, "role": "editor"})
    assert again.status_code == 400 and again.json()["code"] == "user_already_collaborator"
    # someone the folder is not shared with cannot see it, nor share it
    carol = emulator.create_user(f"carol-{uuid.uuid4().hex[:8]}@example.com")
    carol_token = token_for(carol)
    answer = http.post(emulator.url + "/2.0/collaborations", headers={"Authorization": f"Bearer {carol_token}"},
                       json={"item": item, "accessible_by": {"type": "user", "id": carol}, "role": "editor"})
    assert answer.status_code == 404


@pytest.mark.parametrize("role", ["uploader", "previewer uploader", "viewer uploader"])
def test_uploader_roles(alice_client: BoxClient, bob_client: BoxClient, alice_id: str, bob_id: str, workdir: FolderFull,
                        role: str) -> None:
    a = upload(alice_client, workdir.id, "a.txt", b"a")
    sub = alice_client.folders.create_folder("sub", CreateFolderParent(id=workdir.id))
    share(alice_client, workdir.id, bob_id, role)
    mine = upload(bob_client, workdir.id, f"{role}.txt", b"dropped off")  # the upload answers with the file
    assert mine.owned_by.id == alice_id and mine.created_by.id == bob_id and mine.name == f"{role}.txt"
    denied = "access_denied_insufficient_permissions"
    if role == "uploader":  # upload only: the shared folder is visible, what is in it is not (404)
        assert bob_client.folders.get_folder_by_id(workdir.id, fields=["id", "name"]).name == workdir.name
        api_error(lambda: bob_client.folders.get_folder_items(workdir.id), 403, denied)
        for hidden in (lambda: bob_client.files.get_file_by_id(a.id), lambda: bob_client.files.get_file_by_id(mine.id),
                       lambda: bob_client.folders.get_folder_by_id(sub.id), lambda: bob_client.downloads.download_file(a.id),
                       lambda: bob_client.files.delete_file_by_id(a.id)):
            api_error(hidden, 404, "not_found")
    else:
        assert names_in(bob_client, workdir.id) == {"a.txt", "sub", f"{role}.txt"}
        assert bob_client.files.get_file_by_id(a.id).name == "a.txt"
        api_error(lambda: bob_client.files.delete_file_by_id(a.id), 403, denied)
    if role == "viewer uploader":  # may edit (rename, new version), not delete
        assert bob_client.files.update_file_by_id(a.id, name="b.txt").name == "b.txt"
        assert b"".join(bob_client.downloads.download_file(a.id)) == b"a"
    else:
        api_error(lambda: bob_client.files.update_file_by_id(a.id, name="b.txt"), 404 if role == "uploader" else 403)
    assert names_in(alice_client, workdir.id) >= {f"{role}.txt"}


def test_a_collaborators_upload_counts_against_the_owners_space(
        emulator: BoxEmulator, admin_client: BoxClient, bob_client: BoxClient, bob_id: str) -> None:
    small = emulator.create_user(f"small-{uuid.uuid4().hex[:8]}@example.com", space_amount=10)
    owner = admin_client.with_as_user_header(small)
    folder = owner.folders.create_folder("full", CreateFolderParent(id="0"))
    share(owner, folder.id, bob_id)
    api_error(lambda: upload(bob_client, folder.id, "big.txt", b"more than ten bytes"), 403, "storage_limit_exceeded")
    assert upload(bob_client, folder.id, "fits.txt", b"0123456789").size == 10
    assert names_in(owner, folder.id) == {"fits.txt"}


def test_no_invitations_are_pending_within_the_enterprise(alice_client: BoxClient, bob_client: BoxClient, bob_id: str,
                                                          workdir: FolderFull) -> None:
    share(alice_client, workdir.id, bob_id)
    pending = bob_client.list_collaborations.get_collaborations(GetCollaborationsStatus.PENDING)
    assert pending.total_count == 0 and pending.entries == []
