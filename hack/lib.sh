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

# copy_shim_binaries DEST: the shim (MINI_SHIM_BIN, or make build's) and,
# when it sits beside it (as make build puts it), the init binary, into
# directory DEST.
copy_shim_binaries() {
	local dest="$1" shim
	if [ -n "${MINI_SHIM_BIN:-}" ]; then
		[ -x "$MINI_SHIM_BIN" ] || die "MINI_SHIM_BIN=$MINI_SHIM_BIN is not an executable"
		shim="$MINI_SHIM_BIN"
	else
		make -C "$REPO" --no-print-directory build >&2
		shim="$REPO/bin/containerd-shim-mini-v2"
	fi
	cp "$shim" "$dest/containerd-shim-mini-v2"
	if [ -x "$(dirname "$shim")/containerd-shim-mini-v2-init" ]; then
		cp "$(dirname "$shim")/containerd-shim-mini-v2-init" "$dest/"
	fi
}
