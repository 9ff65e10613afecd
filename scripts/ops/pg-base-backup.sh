#!/usr/bin/env bash
# PostgreSQL base backup (plain format, the WAL it needs streamed in) and its
# verification against the backup manifest. Run it daily beside WAL
# archiving (OPERATIONS.md): base backup + archived WAL = any point in time.
#   scripts/ops/pg-base-backup.sh 'host=db1 port=5432 user=replicator' /backups/base-$(date +%F)
set -euo pipefail
conninfo=${1:?usage: pg-base-backup.sh CONNINFO TARGET_DIR}
target=${2:?usage: pg-base-backup.sh CONNINFO TARGET_DIR}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
"${bin:+$bin/}pg_basebackup" -d "$conninfo" -D "$target" -X stream --checkpoint=fast
"${bin:+$bin/}pg_verifybackup" "$target"
du -sh "$target" | cut -f1 | sed 's/^/size: /'
