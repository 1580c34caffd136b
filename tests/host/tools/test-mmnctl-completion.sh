#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# shell-completion/bash/mmnctl: the words it offers, with a minimal
# _init_completion standing in for the bash-completion package.  TAP.
#
#   test-mmnctl-completion.sh COMPLETION-FILE
set -u
n=0
failed=0

_init_completion() {
	words=("${COMP_WORDS[@]}")
	cword=$COMP_CWORD
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
}
compopt() { :; } # only valid inside a real completion

# shellcheck source=/dev/null
source "$1" || { echo "Bail out! cannot source $1"; exit 1; }

# expect "WANTED WORDS" word...: complete the last word of the line.
expect() {
	local want=$1
	shift
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMPREPLY=()
	_mmnctl
	local got="${COMPREPLY[*]}"
	n=$((n + 1))
	if [ "$got" = "$want" ]; then
		echo "ok $n - '$*' -> '$want'"
	else
		failed=1
		echo "not ok $n - '$*' -> '$got', expected '$want'"
	fi
}

expect "status subscriptions stats set-default" mmnctl s
expect "status clients subscriptions stats evict set-default reload monitor" mmnctl ""
expect "pretty short off" mmnctl --json ""
expect "system session" mmnctl --bus s
expect "--no-legend --no-pager" mmnctl --no
expect "ack-timeout-ms= ack-cap-ms=" mmnctl set-default ack
expect "max-clients= max-subs= max-queued= max-clients-per-uid= max-subs-per-uid=" mmnctl --no-pager set-default max
expect "hello-timeout-ms=" mmnctl set-default hello
expect "--client= --pid=" mmnctl subscriptions ""
expect "monitor" mmnctl --json short mo
expect "text openmetrics" mmnctl --format ""
expect "openmetrics" mmnctl stats --format o
expect "--format=" mmnctl stats ""
expect "status stats" mmnctl --format openmetrics st
echo "1..$n"
exit $failed
