#!/usr/bin/env bash
# Online backup of a SQLite deployment: a consistent copy of a live
# database (servers and workers keep running) with `VACUUM INTO`, then an
# integrity check of the copy.
#   scripts/ops/sqlite-backup.sh onboarding.db backups/onboarding-$(date +%F).db
set -euo pipefail
db=${1:?usage: sqlite-backup.sh DATABASE_FILE BACKUP_FILE}
backup=${2:?usage: sqlite-backup.sh DATABASE_FILE BACKUP_FILE}
[ -e "$backup" ] && { echo "$backup exists: choose a new name" >&2; exit 1; }
# VACUUM INTO reads one snapshot (a read transaction): writers go on, the
# copy is what was committed when it started, WAL included.
sqlite3 -bail "$db" ".timeout 10000" "VACUUM INTO '${backup//\'/\'\'}'"
echo "integrity: $(sqlite3 "$backup" 'PRAGMA integrity_check')"
echo "batches: $(sqlite3 "$backup" 'SELECT count(*) FROM batches')  items: $(sqlite3 "$backup" 'SELECT count(*) FROM batch_items')"
