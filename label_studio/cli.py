"""``msmine label-studio push|pull``: a labelling batch to a Label Studio project and its labels back.

    msmine label-studio push --server URL --token TEAM --batch ID --ls-url URL --ls-token KEY [--branch fused]
    msmine label-studio pull --server URL --token TEAM --batch ID --ls-url URL --ls-token KEY
"""

from __future__ import annotations

import argparse
import os
import time

from msmine.errors import UserError

BRANCHES = ("fused", "visible", "thermal")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=os.environ.get("MSMINE_SERVER"),
                   help="collection server URL, e.g. http://127.0.0.1:8080 (default: $MSMINE_SERVER)")
    p.add_argument("--token", default=os.environ.get("MSMINE_TOKEN"),
                   help="the collection server's data-team token (default: $MSMINE_TOKEN); never sent to Label Studio")
    p.add_argument("--batch", required=True, help="labelling batch id (POST /api/v1/batches, or the gallery)")
    p.add_argument("--ls-url", default=os.environ.get("LABEL_STUDIO_URL"),
                   help="Label Studio URL, e.g. http://127.0.0.1:8081 (default: $LABEL_STUDIO_URL)")
    p.add_argument("--ls-token", default=os.environ.get("LABEL_STUDIO_API_KEY"),
                   help="Label Studio API token, legacy or personal access token (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument("--project", type=int, default=None,
                   help="Label Studio project id (default: the project made for this batch, found by its description)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request (default 120)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ls_command", metavar="{push,pull}", required=True)
    push = sub.add_parser("push", help="make (or top up) the batch's Label Studio project, with pre-annotations",
                          description="Make (or top up) the batch's Label Studio project: the visible and thermal "
                                      "image of each pair side by side, the chosen branch's predictions as "
                                      "pre-annotations, tasks in rank order. Re-running adds only new pairs.")
    _common(push)
    push.add_argument("--branch", choices=BRANCHES, default="fused",
                      help="whose predictions become the pre-annotations, on both images (default fused)")
    push.add_argument("--masks", choices=("polygon", "brush"), default="polygon",
                      help="segmentation pre-annotations as editable polygons or exact brushes (default polygon)")
    push.add_argument("--image-base-url", default=None,
                      help="the collection server's URL as labellers' browsers reach it (default: --server)")
    push.add_argument("--expires-days", type=float, default=7.0,
                      help="lifetime of the signed image URLs in days (default 7; a re-run renews those expiring "
                           "within a day)")
    push.add_argument("--title", default=None, help="project title (default 'msmine batch <id>')")
    pull = sub.add_parser("pull", help="import the project's finished annotations as labels on the server",
                          description="Import the finished annotations of the batch's Label Studio project as "
                                      "labels of the collection server (visible image -> visible labels, thermal "
                                      "image -> infrared labels). All or nothing; re-running changes nothing.")
    _common(pull)


def _clients(args: argparse.Namespace):
    from msmine.client import ServerClient
    from msmine.label_studio.api import LabelStudio

    if not args.server:
        raise UserError("--server (or $MSMINE_SERVER) is required: the collection server's URL")
    if not args.token:
        raise UserError("--token (or $MSMINE_TOKEN) is required: a data-team token of the collection server")
    if not args.ls_url:
        raise UserError("--ls-url (or $LABEL_STUDIO_URL) is required: the Label Studio server's URL")
    return (ServerClient(args.server, args.token, timeout=args.timeout),
            LabelStudio(args.ls_url, args.ls_token, timeout=args.timeout))


def run(args: argparse.Namespace) -> int:
    from msmine.label_studio import connector

    server, ls = _clients(args)
    if args.ls_command == "push":
        if not 0 < args.expires_days <= 90:
            raise UserError(f"--expires-days must be in (0, 90], got {args.expires_days}")
        r = connector.push(server, ls, args.batch, branch=args.branch, masks=args.masks, project_id=args.project,
                           title=args.title, image_base_url=args.image_base_url,
                           expires_in_s=max(60, int(args.expires_days * 86400)))
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r.expires_at))
        print(f"{'created' if r.created_project else 'updated'} Label Studio project {r.project_id}: {r.added} tasks "
              f"added ({r.predictions} pre-annotation regions, {args.branch} branch), {r.skipped} already there, "
              f"{r.refreshed} given fresh image URLs; images valid until {until}; {r.project_url}")
        return 0
    r = connector.pull(server, ls, args.batch, project_id=args.project)
    if not r.finished:
        print(f"Label Studio project {r.project_id} has no finished annotation yet ({r.unfinished} tasks); "
              "nothing imported")
        return 0
    print(f"imported {r.finished} finished tasks of Label Studio project {r.project_id}: {r.pairs_labelled} pairs "
          f"labelled ({r.label_sets} label sets); {r.unfinished} tasks not finished yet")
    return 0
