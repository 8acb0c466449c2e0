#!/bin/sh
# examples.sh - every example of the README and of the man pages, run as
# written.
#
# What is an example (the convention the docs follow):
#   README.md    a fenced block opened by ```sh. When some of its lines start
#                with "$ ", it is a transcript: each such line is a command
#                (the text after "$ "), and the lines up to the next one are
#                its output as shown. Otherwise every line of the block is a
#                command but blank lines and comments (#). Blocks of any
#                other kind (```, ```json) are never run, and one holding a
#                "$ " line fails this test: a command must not drop out of
#                it by being marked otherwise.
#   man pages    in the EXAMPLES section, every line between .nf and .fi (or
#                .EX and .EE) but blank lines and comments, roff escapes
#                undone (\- \e \& \(dq \(aq; any other fails the test).
#   Either       a line ending in a backslash goes on on the next line.
#
# How they run: the build is installed with make install DESTDIR, and each
# document's examples run in order in one shell (so the variables one sets
# are there for the next), exactly as written, in a namespace of their own
# (unshare --mount --net --pid): there that install is /usr/local, /run and
# the state directories are empty, the loopback is the namespace's own, so
# the system paths and port 9481 the examples use are free and nothing of
# the machine is touched, and every process an example starts ends with the
# namespace. The working directory holds the program the examples trace:
# examples/leaky of this build, also as ./myprog, ./server and ./leaky, the
# names the man pages give it. README.md and memtracectl(1) run as root
# (memtracectl(1) takes a running memtraced for granted: one is started
# first, not counted as an example); memtraced(8) says "as an ordinary
# user" and runs as uid 65534, with a HOME and an XDG_RUNTIME_DIR.
#
# A check per command: it exits 0, or 1 when its shown output is an error
# ({"error": {"code": C ...}}, then with that code); where an output is shown,
# a shown JSON's keys are all in the real one, and a shown table's first
# line's words (not numbers, paths or units) are all in the real first line.
# The examples that cannot run here are listed in not_run below, with why,
# and printed as NOT RUN; they are not checks. A failure is printed as
# DOC:LINE:F:examples: COMMAND (Check's form, which CI lists), then its exit
# status, what differs from the docs, its stderr and stdout. Root is needed
# for the namespaces: otherwise this test is skipped (77), as when the
# build's prefix is not /usr/local, the one the examples are written for.
# MEMTRACE_EXAMPLES_KEEP=1 keeps the outputs (the run says where);
# MEMTRACE_EXAMPLES_TIMEOUT a document's seconds (300).
srcdir=${srcdir:-.}
build=${MEMTRACE_BUILDDIR:-.}
session_timeout=${MEMTRACE_EXAMPLES_TIMEOUT:-300}

# ---- inside the namespace (this script again, as root) ----
if [ "${1:-}" = --inside ]; then
	tmp=$2 doc=$3 user=$4
	ns=$tmp/$doc/ns
	set -e
	mount -t tmpfs -o mode=0755 tmpfs "$ns"
	mkdir "$ns/upper" "$ns/work"
	# /var/lib as the machine has it, but without memtrace's state.
	mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$ns/upper,workdir=$ns/work" /var/lib
	rm -rf /var/lib/memtrace
	# This build's install over what /usr/local holds.
	mount -t overlay overlay -o "lowerdir=$tmp/dest/usr/local:/usr/local" /usr/local
	mount -t tmpfs -o mode=0755 tmpfs /run
	ip link set lo up
	# The session's results go to a directory on this namespace's own
	# tmpfs, which no process outside it can reach; they are copied out,
	# regular files only, into the root-owned res when it ends (a session
	# of uid 65534 must not let another process of that uid on the host
	# plant links that root then reads).
	mkdir -m 0755 "$ns/res"
	[ "$user" = root ] || chown 65534:65534 "$ns/res"
	cd "$tmp/$doc/work"
	set +e
	if [ "$user" = root ]; then
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			HOME="$tmp/$doc/home" USER=root LOGNAME=root LANG=C.UTF-8 \
			sh "$tmp/$doc/session.sh"
	else
		mkdir -m 0755 /run/user
		mkdir -m 0700 /run/user/65534
		chown 65534:65534 /run/user/65534
		setpriv --reuid=65534 --regid=65534 --clear-groups -- env -i \
			PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games \
			HOME="$tmp/$doc/home" USER=nobody LOGNAME=nobody LANG=C.UTF-8 \
			XDG_RUNTIME_DIR=/run/user/65534 sh "$tmp/$doc/session.sh"
	fi
	find "$ns/res" -maxdepth 1 -type f -exec cp -- {} "$tmp/$doc/res/" \;
	exit 0
fi

# ---- the examples that are not run, and why ----
# A shell pattern on a command as extracted, and the reason. A pattern that
# matches no example fails the test: this list stays that of the docs.
not_run() {
	cat <<'EOF'
sh scripts/demo.sh *	installs Debian packages, builds in the source tree and installs into the machine's /usr/local: this test does its steps (an install, memtraced, the examples) in a namespace
sh scripts/test.sh *	the whole suite of CI, which runs this test
sh scripts/build.sh && (cd build && make install)*	builds in the source tree and installs into the machine
systemd-tmpfiles --create memtrace.conf	changes the machine's /run; e2e_service checks the tmpfiles entry and the units
systemctl *	needs systemd as PID 1 and changes the machine's services; e2e_service checks the units
flamegraph.pl *	flamegraph.pl (Brendan Gregg's FlameGraph) is not packaged in Debian 12
sh scripts/build.sh && (cd build && make bench)	builds in the source tree (the benchmarks below need it)
bash bench/*	a benchmark (bench/README.md) of the build that make bench makes in the source tree: long runs that measure, not checks; redis.sh and attach.sh need redis-server (sh scripts/deps.sh bench)
./build/bench/ingest *	a benchmark of the build that make bench makes in the source tree: it measures, it checks nothing
sh scripts/deps.sh test *	installs Debian packages (scripts/test.sh runs it)
autoreconf -fi && mkdir build && cd build && *	the build and make check that run this test
../configure --enable-werror *	a configure line of CI's, which scripts/test.sh runs
EOF
}

passes=0
fails=0
status=0
fail() { # where (DOC:LINE, or empty), what, details
	# An example's failure is a line in Check's form, which CI lists.
	if [ -n "$1" ]; then
		printf '%s:F:examples: %s\n' "$1" "$2"
	else
		printf 'FAIL %s\n' "$2"
	fi
	[ -z "${3:-}" ] || printf '%s\n' "$3" | sed 's/^/    /'
	fails=$((fails + 1))
	status=1
}
summary() {
	total=$((passes + fails))
	# A summary in Check's words, so that CI's summary lists this test too.
	echo "$((total > 0 ? passes * 100 / total : 0))%: Checks: $total, Failures: $fails, Errors: 0"
}

if [ "$(id -u)" != 0 ]; then
	echo "SKIP: the examples run in namespaces of their own (unshare --mount --net --pid), which needs root; NOT RUN"
	exit 77
fi
for tool in unshare setpriv ip timeout make; do
	command -v "$tool" >/dev/null || { echo "FAIL $tool is missing (sh scripts/deps.sh test)"; exit 1; }
done
prefix=$(sed -n 's/^prefix = //p' "$build/Makefile")
if [ "$prefix" != /usr/local ]; then
	echo "SKIP: the examples are written for the prefix /usr/local; this build's is $prefix; NOT RUN"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/memtrace-examples.XXXXXX") || exit 1
chmod 0755 "$tmp"
ns_pid=
cleanup() {
	[ -z "$ns_pid" ] || kill "$ns_pid" 2>/dev/null
	if [ -n "${MEMTRACE_EXAMPLES_KEEP:-}" ]; then
		echo "(kept: $tmp, each example's output in DOC/res/NNN.out, .err and .rc)"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# ---- the install, and the program ----
echo "== make install DESTDIR=... and make examples in $build"
if ! (cd "$build" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make examples install DESTDIR="$tmp/dest") \
	>"$tmp/install.log" 2>&1; then
	fail "" "make install" "$(tail -30 "$tmp/install.log")"
	summary
	exit 1
fi
# Nothing outside the prefix: the units and the tmpfiles entry go to its
# lib/systemd/system and lib/tmpfiles.d, where systemd reads them.
outside=$(cd "$tmp/dest" && find . ! -type d | grep -v '^\./usr/local/')
if [ -n "$outside" ]; then
	fail "" "make install" "files outside the prefix /usr/local:
$outside"
else
	passes=$((passes + 1))
	echo "PASS make install: every file under /usr/local"
fi
for f in sbin/memtraced bin/memtracectl lib/memtrace/libmemtrace.so lib/systemd/system/memtraced.service \
	lib/tmpfiles.d/memtrace.conf; do
	[ -e "$tmp/dest/usr/local/$f" ] || {
		fail "" "make install" "no /usr/local/$f in the install"
		summary
		exit 1
	}
done

# ---- extraction ----
# For each document, into $tmp/ID/: NNN.cmd (the command), NNN.loc
# (DOC:LINE), NNN.shown (the output shown, maybe empty), and NNN.bad for a
# block that breaks the convention (DOC:LINE, then why).
extract() { # file, id, name as shown, kind (md|man)
	mkdir -p "$tmp/$2"
	awk -v dir="$tmp/$2" -v doc="$3" -v kind="$4" '
	function emit(text, line,    f) {
		n++
		f = sprintf("%s/%03d", dir, n)
		printf "%s\n", text > (f ".cmd"); close(f ".cmd")
		printf "%s:%d\n", doc, line > (f ".loc"); close(f ".loc")
		printf "" > (f ".shown"); close(f ".shown")
		cur = f ".shown"
	}
	function bad(line, why,    f) {
		n++
		f = sprintf("%s/%03d", dir, n)
		printf "%s:%d\n%s\n", doc, line, why > (f ".bad"); close(f ".bad")
	}
	function unroff(s, line,    t, i) {
		t = s
		gsub(/\\(-|e|&|\(dq|\(aq)/, "", t)
		if (index(t, "\\") > 0)
			bad(line, "a roff escape this test does not know: " s)
		gsub(/\\-/, "-", s); gsub(/\\&/, "", s); gsub(/\\\(dq/, "\"", s)
		gsub(/\\\(aq/, "\047", s)
		# \e last, and not by gsub, whose replacement treats a backslash
		# differently from one awk to another.
		t = ""
		while ((i = index(s, "\\e")) > 0) {
			t = t substr(s, 1, i - 1) "\\"
			s = substr(s, i + 2)
		}
		return t s
	}
	# The lines of a block: commands, their continuation lines joined.
	function flush(    i, transcript, text, line, shown) {
		transcript = 0
		for (i = 1; i <= nl; i++)
			if (substr(l[i], 1, 2) == "$ ")
				transcript = 1
		if (lang != "sh") {
			if (transcript)
				bad(ln[1], "a block with \"$ \" commands that is not marked ```sh")
			nl = 0
			return
		}
		cur = ""
		for (i = 1; i <= nl; i++) {
			if (transcript && substr(l[i], 1, 2) != "$ ") {
				if (cur != "") { print l[i] >> cur; close(cur) }
				continue
			}
			text = transcript ? substr(l[i], 3) : l[i]
			line = ln[i]
			if (text ~ /^[ \t]*(#|$)/)
				continue
			while (text ~ /\\$/ && i < nl) {
				i++
				text = substr(text, 1, length(text) - 1) "\n" l[i]
			}
			emit(text, line)
		}
		nl = 0
	}
	kind == "md" && /^```/ {
		if (!inblock) { inblock = 1; lang = substr($0, 4); nl = 0 }
		else { inblock = 0; flush() }
		next
	}
	kind == "md" && inblock { l[++nl] = $0; ln[nl] = NR; next }
	kind == "man" && /^\.SH/ { examples = ($0 ~ /^\.SH "?EXAMPLES"?$/); next }
	kind == "man" && examples && /^\.(nf|EX)([ \t]|$)/ { inblock = 1; lang = "sh"; nl = 0; next }
	kind == "man" && examples && /^\.(fi|EE)([ \t]|$)/ { inblock = 0; flush(); next }
	kind == "man" && inblock {
		if (substr($0, 1, 1) == "." || substr($0, 1, 1) == "\047") {
			bad(NR, "a request inside an example: " $0)
			next
		}
		l[++nl] = unroff($0, NR); ln[nl] = NR; next
	}
	END { if (inblock) bad(NR, "a block that does not end") }
	' "$1"
}

docs=
extract "$srcdir/README.md" README.md README.md md && docs="$docs README.md"
for page in "$srcdir"/man/*.[1-8]; do
	name=$(basename "$page")
	extract "$page" "$name" "man/$name" man && docs="$docs $name"
done

# ---- the sessions ----
# The user a document's examples run as, and whether they need a running
# memtraced they do not start themselves.
doc_user() {
	case $1 in
	memtraced.8) echo nobody ;;
	*) echo root ;;
	esac
}
doc_daemon() {
	case $1 in
	memtracectl.1) echo yes ;;
	*) echo no ;;
	esac
}

not_run >"$tmp/not_run"
: >"$tmp/not_run.used"
excluded() { # command; prints the reason when it is not run
	while IFS='	' read -r pat why; do
		case $1 in
		$pat)
			printf '%s\n' "$pat" >>"$tmp/not_run.used"
			printf '%s\n' "$why"
			return 0
			;;
		esac
	done <"$tmp/not_run"
	return 1
}

for doc in $docs; do
	d="$tmp/$doc"
	mkdir -p "$d/work/examples" "$d/home" "$d/ns"
	mkdir -m 0700 "$d/res"
	for f in "$d"/*.bad; do
		[ -e "$f" ] || continue
		fail "$(sed -n 1p "$f")" "$(sed -n 2p "$f")"
	done
	n=0
	{
		cat <<'EOF'
# One example: its text is on standard input, run in this shell.
ex() {
	_ex_n=$1
	_ex_cmd=$(cat)
	echo "$_ex_n" >"$_ex_res/current"
	eval "$_ex_cmd" </dev/null >"$_ex_res/$_ex_n.out" 2>"$_ex_res/$_ex_n.err"
	echo $? >"$_ex_res/$_ex_n.rc"
}
EOF
		echo "_ex_res='$d/ns/res'"
		if [ "$(doc_daemon "$doc")" = yes ]; then
			cat <<'EOF'
memtraced 2>"$_ex_res/setup-memtraced.log" &
_ex_i=0
until memtracectl status >/dev/null 2>&1; do
	_ex_i=$((_ex_i + 1))
	[ $_ex_i -lt 100 ] || { echo "memtraced did not start" >"$_ex_res/setup.failed"; exit 1; }
	sleep 0.1
done
EOF
		fi
		for f in "$d"/*.cmd; do
			[ -e "$f" ] || continue
			k=$(basename "$f" .cmd)
			cmd=$(cat "$f")
			if why=$(excluded "$cmd"); then
				echo "$why" >"$d/$k.notrun"
				continue
			fi
			n=$((n + 1))
			printf 'ex %s <<'"'"'MEMTRACE_EXAMPLE_END'"'"'\n%s\nMEMTRACE_EXAMPLE_END\n' "$k" "$cmd"
		done
	} >"$d/session.sh"
	[ "$n" -gt 0 ] || continue
	cp "$build/examples/leaky" "$d/work/examples/leaky"
	for alias in myprog server leaky; do
		cp "$build/examples/leaky" "$d/work/$alias"
	done
	user=$(doc_user "$doc")
	[ "$user" = root ] || chown -R 65534:65534 "$d/work" "$d/home"
	echo "== $doc: $n examples, as $user$([ "$(doc_daemon "$doc")" = yes ] && echo ", memtraced started first")"
	timeout "$session_timeout" unshare --mount --net --pid --fork --kill-child --mount-proc \
		sh "$0" --inside "$tmp" "$doc" "$user" >"$d/session.log" 2>&1 &
	ns_pid=$!
	wait "$ns_pid"
	rc=$?
	ns_pid=
	if [ $rc -eq 124 ]; then
		fail "" "$doc: the session did not end within $session_timeout s"
	elif [ $rc -ne 0 ] || [ -e "$d/res/setup.failed" ]; then
		fail "" "$doc: the session failed (status $rc)" \
			"$(cat "$d/session.log" "$d/res/setup.failed" "$d/res/setup-memtraced.log" 2>/dev/null)"
	fi
done

# ---- the checks ----
words() { # the words of a line: no numbers, paths or units
	printf '%s\n' "$1" | tr -s ' \t' '\n\n' | awk '
		/[0-9\/]/ { next }
		{ gsub(/[^A-Za-z_]/, "") }
		length($0) >= 2 && $0 !~ /^(B|KiB|MiB|GiB|TiB)$/ { print }'
}
for doc in $docs; do
	d="$tmp/$doc"
	for f in "$d"/*.cmd; do
		[ -e "$f" ] || continue
		k=$(basename "$f" .cmd)
		loc=$(cat "$d/$k.loc")
		cmd=$(cat "$f")
		if [ -e "$d/$k.notrun" ]; then
			printf 'NOT RUN %s: %s\n' "$loc" "$cmd"
			echo "    ($(cat "$d/$k.notrun"))"
			continue
		fi
		res="$d/res/$k"
		if [ ! -e "$res.rc" ]; then
			if [ "$(cat "$d/res/current" 2>/dev/null)" = "$k" ]; then
				why="it was running when its session ended (a hang, or the session's $session_timeout s were over)"
			else
				why="its session ended before it"
			fi
			fail "$loc" "$cmd" "$why$( [ -s "$res.err" ] && printf '\nstderr:\n%s' "$(head -30 "$res.err")")"
			continue
		fi
		rc=$(cat "$res.rc")
		first=$(sed -n 1p "$d/$k.shown")
		problems=
		want=0
		case $first in
		'{"error"'*)
			want=1
			code=$(printf '%s\n' "$first" | sed -n 's/.*"code": *"\([a-z_]*\)".*/\1/p')
			grep -q "\"code\":[[:space:]]*\"$code\"" "$res.out" ||
				problems="$problems
the error is not $code"
			;;
		'{'*)
			for key in $(grep -o '"[A-Za-z_][A-Za-z0-9_]*":' "$d/$k.shown" | sort -u); do
				grep -qF "$key" "$res.out" || problems="$problems
no $key in the output, which the docs show"
			done
			;;
		?*)
			got=$(sed -n 1p "$res.out")
			for w in $(words "$first"); do
				printf '%s\n' "$got" | tr -c 'A-Za-z_\n' ' ' | tr -s ' ' '\n' | grep -qx "$w" ||
					problems="$problems
no \"$w\" in the first line of the output, as the docs show it:
  shown: $first
  got:   $got"
			done
			;;
		esac
		[ "$rc" = "$want" ] || problems="exit status $rc, not $want$problems"
		if [ -z "$problems" ]; then
			passes=$((passes + 1))
			printf 'PASS %s: %s\n' "$loc" "$cmd"
		else
			fail "$loc" "$cmd" "$(printf '%s\n' "${problems#
}"; echo "stderr:"; head -30 "$res.err"; echo "stdout:"; head -20 "$res.out")"
		fi
	done
done

while IFS='	' read -r pat why; do
	grep -qxF "$pat" "$tmp/not_run.used" || fail "" "not_run: '$pat' matches no example of the docs any more"
done <"$tmp/not_run"

summary
exit $status
