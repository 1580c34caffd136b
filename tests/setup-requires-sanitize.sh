#!/bin/sh
echo "--setup=asan needs a build configured with -Db_sanitize=address,undefined (see scripts/test)" >&2
exit 1
