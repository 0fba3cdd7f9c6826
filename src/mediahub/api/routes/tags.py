"""Machine tags: moderators accept, reject and correct what the classifier said of an item, and export the
decisions as labels."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from mediahub.api.deps import PrincipalDep, TagServiceDep
from mediahub.api.errors import problem_responses
from mediahub.api.presenters import machine_tags_out
from mediahub.api.schemas import MAX_ID, MachineTagsOut, RoomRequest
from mediahub.db.models import MediaTag

router = APIRouter(prefix="/v1/media", tags=["tags"])

MediaIdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
TagIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a machine tag's id (`machine_tags[].id`)")]
ERRORS = problem_responses(401, 403, 404, 409, 422)
EXPORT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


def _out(media_id: int, tags: list[MediaTag]) -> MachineTagsOut:
    return MachineTagsOut(media_id=media_id, machine_tags=machine_tags_out(tags, private=True))


@router.get("/tags/export", response_class=StreamingResponse, responses=problem_responses(401, 403, 422),
            summary="Export moderators' tag decisions as labels",
            description="Moderators and admins: one line per decided tag: the item's public id and SHA-256, the "
                        "true label where known, the decision (accepted, rejected, corrected, labelled), what the "
                        "machine said (label, score, model), who decided and when. JSON Lines or CSV.")
def export_tags(tags: TagServiceDep, principal: PrincipalDep,
                format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl") -> StreamingResponse:  # noqa: A002
    lines = tags.export(principal, format)
    return StreamingResponse(lines, media_type=EXPORT_TYPES[format],
                             headers={"Content-Disposition": f'attachment; filename="tag-labels.{format}"'})


@router.post("/{media_id}/tags/{tag_id}/accept", response_model=MachineTagsOut, responses=ERRORS,
             summary="Accept a machine tag",
             description="Moderators and admins. An accepted room is the item's only room: it replaces a "
                         "moderator's room and rejects other accepted ones. 409 `not_machine_tag` for a moderator's "
                         "room (correct it instead). Answers the item's tags.")
def accept_tag(media_id: MediaIdPath, tag_id: TagIdPath, tags: TagServiceDep,
               principal: PrincipalDep) -> MachineTagsOut:
    return _out(media_id, tags.accept(media_id, tag_id, principal))


@router.post("/{media_id}/tags/{tag_id}/reject", response_model=MachineTagsOut, responses=ERRORS,
             summary="Reject a machine tag",
             description="Moderators and admins. The tag is kept as rejected (the export has it); a later tagging "
                         "run never overwrites the decision.")
def reject_tag(media_id: MediaIdPath, tag_id: TagIdPath, tags: TagServiceDep,
               principal: PrincipalDep) -> MachineTagsOut:
    return _out(media_id, tags.reject(media_id, tag_id, principal))


@router.put("/{media_id}/room", response_model=MachineTagsOut, responses=ERRORS, summary="Correct an item's room",
            description="Moderators and admins. `label` must be a room label (422 `unknown_room_label` lists them). "
                        "A machine room of that label is accepted; otherwise the moderator's room is set and the "
                        "machine's rooms are rejected, kept beside it for the export. 409 `not_room_tagged` for an "
                        "item that is not an image of a room-tagged field (listing photos).")
def correct_room(media_id: MediaIdPath, body: RoomRequest, tags: TagServiceDep,
                 principal: PrincipalDep) -> MachineTagsOut:
    return _out(media_id, tags.correct_room(media_id, body.label, principal))
