#!/usr/bin/env python3
"""moto_server with one correction where the emulator fails a call that AWS cannot fail.

moto takes a new DB instance's first automated snapshot the moment it creates the instance, names it
rds:<instance>-<YYYY-MM-DD-HH-MM>, and answers CreateDBInstance with DBSnapshotAlreadyExists (after adding
the instance) when a snapshot of that name exists already. The provider deletes a database keeping its
automated backups, so a stack destroyed and created again with the same name within the same minute met its
predecessor's retained snapshot, and the second apply failed half done. On AWS that cannot happen: deleting
and creating an instance take minutes each, a first backup comes later still, and retained backups belong
to the deleted instance's resource id, not to its name. Here the new instance's snapshot gets a free name
(`-2`, `-3`, ...) in that case; moto is otherwise the published package, unchanged.

Run by scripts/emulator.sh with moto_server's own arguments.
"""

import sys

from moto.core.utils import utcnow
from moto.rds import models
from moto.server import main


def save_automated_backup(self: models.DBInstance) -> None:
    """moto's DBInstance.save_automated_backup, with a free name when the minute's is taken."""
    self.add_event("DB_INSTANCE_BACKUP_START")
    base = f"rds:{self.db_instance_identifier}-{utcnow().strftime('%Y-%m-%d-%H-%M')}"
    snapshot_id, n = base, 1
    while snapshot_id in self.backend.database_snapshots:
        n += 1
        snapshot_id = f"{base}-{n}"
    self.backend.create_auto_snapshot(self.db_instance_identifier, snapshot_id)
    self.add_event("DB_INSTANCE_BACKUP_FINISH")


models.DBInstance.save_automated_backup = save_automated_backup

if __name__ == "__main__":
    sys.exit(main())
