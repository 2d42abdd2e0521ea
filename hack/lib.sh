# shellcheck shell=bash
# What hack/vm-test.sh and hack/systemd-test.sh share; sourced, after the
# script has set LOG_TAG (its name in what it prints).

log() { echo "${LOG_TAG}: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# banner prints its one line framed, so that a skipped step stands out in
# a long CI log.
banner() {
	local line='#####################################################################'
	{
		echo "$line"
		echo "##"
		echo "##  $1"
		echo "##"
		echo "$line"
	} >&2
}

# go_test_args turns `go test` style flags (-run X, -v) into the test
# binary's own (-test.run X, -test.v); values pass through.
go_test_args() {
	local a
	for a in "$@"; do
		case "$a" in
		-test.*) echo "$a" ;;
		--*) echo "-test.${a#--}" ;;
		-*) echo "-test.${a#-}" ;;
		*) echo "$a" ;;
		esac
	done
}
