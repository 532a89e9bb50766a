"""Label Studio connector: a labelling batch of the collection server becomes a Label Studio project,
and its finished annotations come back as labels (``msmine label-studio push`` / ``pull``).

* :mod:`msmine.label_studio.api` -- Label Studio's REST API over ``urllib`` (legacy ``Token`` or
  personal access token), every failure one :class:`~msmine.errors.UserError` line.
* :mod:`msmine.label_studio.connector` -- push and pull, idempotent.
* :mod:`msmine.label_studio.cli` -- the ``msmine label-studio`` command.

The collection server builds the tasks (``POST /api/v1/batches/<id>/label-studio``: the labelling
config, the chosen branch's predictions, images by signed URL) and reads Label Studio's JSON export
(``POST /api/v1/labels?format=label-studio``), so the formats have one owner
(:mod:`msmine.server.label_export` / :mod:`msmine.server.label_import`); this package only moves
them between the two servers over HTTP and checks that they belong to the batch.
"""
