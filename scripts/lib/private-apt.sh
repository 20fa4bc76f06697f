# Fetching Debian packages without touching the machine's apt setup (sourced by the provision
# scripts). It uses its own source list, package lists and cache below $apt_root, and takes the
# mirror URI and keyring from the machine's own apt sources: no registry host is written anywhere.
#
#   private_apt_prepare <apt_root> <suite...>   read the package lists of those suites (main)
#   private_apt_download <dir> <package...>     download .deb files into <dir>
#   private_apt_versions <package>              "<version> <suite>" lines, newest first
# "${apt_opts[@]}" holds the apt options once prepared.

mirror_uri=""
keyring=""
apt_opts=()

# The machine's Debian mirror URI and keyring, read from its own apt sources.
private_apt_read_mirror() {
  [ -n "$mirror_uri" ] && return 0
  command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 || return 1
  local found=""
  # deb822 stanzas (blank-line separated): the first "deb" stanza that is not a security suite.
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
    found=$(awk -v RS= '
      /(^|\n)Types:[^\n]*deb([ \n]|$)/ && !/security/ {
        uri = ""; key = ""
        n = split($0, lines, "\n")
        for (i = 1; i <= n; i++) {
          if (lines[i] ~ /^URIs:/) { split(lines[i], f, /[ \t]+/); uri = f[2] }
          if (lines[i] ~ /^Signed-By:/) { split(lines[i], f, /[ \t]+/); key = f[2] }
        }
        if (uri != "") { print uri, key; exit }
      }' /etc/apt/sources.list.d/*.sources)
  fi
  # One-line format: "deb [options] URI suite components".
  if [ -z "$found" ] && [ -f /etc/apt/sources.list ]; then
    found=$(awk '$1 == "deb" && !/security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$found" ] || return 1
  mirror_uri=${found%% *}
  keyring=${found#"$mirror_uri"}
  keyring=${keyring# }
  [ -n "$keyring" ] && [ -f "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
}

private_apt_prepare() {
  local root=$1
  shift
  private_apt_read_mirror || return 1
  mkdir -p "$root/lists/partial" "$root/archives/partial" "$root/etc"
  local suite
  for suite in "$@"; do
    echo "deb [signed-by=$keyring] $mirror_uri $suite main"
  done >"$root/etc/sources.list"
  apt_opts=(
    -o "Dir::Etc::SourceList=$root/etc/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$root/lists"
    -o "Dir::Cache=$root"
    -o "Dir::Cache::Archives=$root/archives"
    -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=1"
  )
  echo "private-apt: reading package lists from $mirror_uri ($*) into $root" >&2
  apt-get "${apt_opts[@]}" -qq update >&2
}

private_apt_versions() {
  apt-cache "${apt_opts[@]}" madison "$1" |
    awk -F'|' '{ gsub(/ /, "", $2); split($3, s, " "); split(s[2], t, "/"); print $2, t[1] }' |
    sort -rV
}

private_apt_download() {
  local dir=$1
  shift
  (cd "$dir" && apt-get "${apt_opts[@]}" -qq download "$@" >&2)
}
