#!/usr/bin/env bash
# Restores a base backup into a new data directory, replaying the archived
# WAL up to its end (or up to RECOVERY_TARGET_TIME='2026-11-30 16:00:00+00').
# Start PostgreSQL on DATA_DIR afterwards: it replays, then opens read-write.
#   scripts/ops/pg-restore.sh /backups/base-2026-11-30 /backups/wal /var/lib/postgresql/15/restored
set -euo pipefail
backup=${1:?usage: pg-restore.sh BASE_BACKUP_DIR WAL_ARCHIVE_DIR DATA_DIR}
archive=${2:?usage: pg-restore.sh BASE_BACKUP_DIR WAL_ARCHIVE_DIR DATA_DIR}
data=${3:?usage: pg-restore.sh BASE_BACKUP_DIR WAL_ARCHIVE_DIR DATA_DIR}
[ -e "$data" ] && [ -n "$(ls -A "$data")" ] && { echo "$data is not empty" >&2; exit 1; }
mkdir -p "$data"
cp -a "$backup"/. "$data"/
chmod 700 "$data"
{
  echo "restore_command = 'cp $archive/%f %p'"
  [ -n "${RECOVERY_TARGET_TIME:-}" ] && echo "recovery_target_time = '$RECOVERY_TARGET_TIME'"
  echo "recovery_target_action = 'promote'"
} >> "$data/postgresql.auto.conf"
touch "$data/recovery.signal"
echo "restored into $data: start PostgreSQL on it to replay $(ls "$archive" | grep -c '^[0-9A-F]\{24\}$') archived WAL segments"
