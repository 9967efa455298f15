#!/usr/bin/env bash
# Configures a worker node for layercrypt: the containerd stream processors (1.6/1.7 or 2.x),
# the ocicrypt key-provider config for CRI-O/podman/skopeo, and a node config template.
# It does not copy binaries (install layercrypt-decoder and layercrypt-keyprovider first) and
# does not edit containerd's main config.toml: it writes an importable snippet and says
# what to add. `layercrypt node install` will replace this script.
#
# Usage: install.sh [--dry-run] [--containerd-version 1|2] [--bin-dir DIR] [--keys-dir DIR]
#                   [--conf-dir DIR] [--etc DIR] [--ocicrypt-dir DIR]
#   --dry-run              print every file instead of writing it
#   --containerd-version   1 = containerd 1.6/1.7 (config version 2), 2 = containerd 2.x
#                          (config version 3); default: from `containerd --version`
#   --bin-dir DIR          where the binaries are (default /usr/local/bin)
#   --keys-dir DIR         node key directory (default /etc/containerd/ocicrypt/keys)
#   --conf-dir DIR         containerd snippet directory (default /etc/containerd/conf.d)
#   --etc DIR              layercrypt config directory (default /etc/layercrypt)
#   --ocicrypt-dir DIR     key-provider config directory (default /etc/containerd/ocicrypt)
# See docs/worker-node.md.
set -euo pipefail

dry_run=0
ctd_major=""
bin_dir=/usr/local/bin
keys_dir=/etc/containerd/ocicrypt/keys
conf_dir=/etc/containerd/conf.d
etc_dir=/etc/layercrypt
ocicrypt_dir=/etc/containerd/ocicrypt

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --containerd-version) ctd_major="${2:?}"; shift ;;
    --bin-dir) bin_dir="${2:?}"; shift ;;
    --keys-dir) keys_dir="${2:?}"; shift ;;
    --conf-dir) conf_dir="${2:?}"; shift ;;
    --etc) etc_dir="${2:?}"; shift ;;
    --ocicrypt-dir) ocicrypt_dir="${2:?}"; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$ctd_major" ]; then
  if v=$(containerd --version 2>/dev/null); then
    # "containerd containerd.io 1.7.x ..." or "containerd github.com/containerd/containerd v2.1.4 ..."
    ctd_major=$(printf '%s\n' "$v" | grep -oE '\bv?[0-9]+\.[0-9]+\.[0-9]+' | head -1 | sed 's/^v//' | cut -d. -f1)
  fi
  ctd_major=${ctd_major:-1}
  echo "install.sh: containerd major version $ctd_major (override with --containerd-version)" >&2
fi
case "$ctd_major" in 1|2) ;; *) echo "install.sh: --containerd-version must be 1 or 2" >&2; exit 2 ;; esac

decoder="$bin_dir/layercrypt-decoder"
keyprovider="$bin_dir/layercrypt-keyprovider"
mt=application/vnd.oci.image.layer.v1

# Stream processors: exactly the two imgcrypt IDs (only they get the payload on fd 3, and
# they override containerd's built-in ctd-decoder defaults). The .tar ID also takes
# tar+zstd+encrypted and returns plain tar (the decoder decompresses zstd itself).
processors() {
  local q="$1"  # quote character: " for version 2, ' for version 3
  cat <<EOT
[stream_processors]
  [stream_processors.${q}io.containerd.ocicrypt.decoder.v1.tar.gzip${q}]
    accepts = [${q}$mt.tar+gzip+encrypted${q}, ${q}application/vnd.oci.image.layer.nondistributable.v1.tar+gzip+encrypted${q}]
    returns = ${q}$mt.tar+gzip${q}
    path = ${q}$decoder${q}
    args = [${q}--decryption-keys-path${q}, ${q}$keys_dir${q}, ${q}--config${q}, ${q}$etc_dir/node.toml${q}]
    env = [${q}OCICRYPT_KEYPROVIDER_CONFIG=$ocicrypt_dir/ocicrypt_keyprovider.conf${q}]
  [stream_processors.${q}io.containerd.ocicrypt.decoder.v1.tar${q}]
    accepts = [${q}$mt.tar+encrypted${q}, ${q}$mt.tar+zstd+encrypted${q}, ${q}application/vnd.oci.image.layer.nondistributable.v1.tar+encrypted${q}, ${q}application/vnd.oci.image.layer.nondistributable.v1.tar+zstd+encrypted${q}]
    returns = ${q}$mt.tar${q}
    path = ${q}$decoder${q}
    args = [${q}--decryption-keys-path${q}, ${q}$keys_dir${q}, ${q}--config${q}, ${q}$etc_dir/node.toml${q}]
    env = [${q}OCICRYPT_KEYPROVIDER_CONFIG=$ocicrypt_dir/ocicrypt_keyprovider.conf${q}]
EOT
}

containerd_snippet() {
  if [ "$ctd_major" = 1 ]; then
    cat <<EOT
# layercrypt: decrypt ocicrypt layers at pull time (containerd 1.6 / 1.7).
# Import this file from /etc/containerd/config.toml: imports = ["$conf_dir/*.toml"]
version = 2
[plugins."io.containerd.grpc.v1.cri".image_decryption]
  key_model = "node"
EOT
    processors '"'
  else
    cat <<EOT
# layercrypt: decrypt ocicrypt layers at pull time (containerd 2.x).
# Needs containerd 2.1.7+, 2.2.2+ or 2.3+: 2.0.x, 2.1.0-2.1.6 and 2.2.0-2.2.1 never pass the
# decryption payload (containerd#10005). Import this file from /etc/containerd/config.toml:
# imports = ['$conf_dir/*.toml']
version = 3
[plugins.'io.containerd.cri.v1.images']
  # REQUIRED: the default transfer-service pull never passes the payload.
  use_local_image_pull = true
  [plugins.'io.containerd.cri.v1.images'.image_decryption]
    key_model = 'node'
EOT
    processors "'"
  fi
}

keyprovider_conf() {
  cat <<EOT
{"key-providers": {"layercrypt": {"cmd": {"path": "$keyprovider", "args": ["--config", "$etc_dir/node.toml"]}}}}
EOT
}

node_toml() {
  cat <<'EOT'
# layercrypt node configuration (docs/worker-node.md). Without brokers and a credential the
# node decrypts only with the local keys in the containerd key directory.

# Base URLs of the key brokers this node may ask; a group layer naming another broker is refused
# (whatever the layer says). http:// only for 127.0.0.1/localhost.
brokers = []

# Extra CA certificates (PEM) for the brokers' TLS server certificates (optional).
# ca_file = "/etc/layercrypt/broker-ca.pem"

# How this node authenticates to the brokers: exactly one kind; secrets are file paths
# (absolute, mode 0600). Uncomment [credential] and ONE of the blocks below.
# [credential]
# A bearer token, first line of the file, read on every layer; keep it fresh with oidc-agent
# (e.g. a timer running `oidc-token ACCOUNT > FILE`) or another timer:
# kind = "token-file"
# token_file = "/etc/layercrypt/token"
#
# An OAuth refresh token, exchanged at the issuer (discovery) whenever a token is needed; a
# rotated refresh token is written back to the file:
# kind = "refresh-token"
# refresh_token_file = "/etc/layercrypt/refresh-token"
# client_id = "layercrypt-node"
# issuer = "https://iam.example.org"
#
# OAuth client credentials of a service or robot account (grant_type=client_credentials):
# kind = "client-credentials"
# client_id = "node-42"
# client_secret_file = "/etc/layercrypt/client-secret"
# issuer = "https://iam.example.org"
#
# A host or robot certificate, or an RCAuth/RFC 3820 proxy (then cert_file = key_file = the
# proxy file); the broker must serve TLS and trust the CA (its client_ca_dir):
# kind = "tls-client-cert"
# cert_file = "/etc/grid-security/hostcert.pem"
# key_file = "/etc/grid-security/hostkey.pem"

[timeouts]
connect_secs = 5
request_secs = 20

[key_cache]          # unwrapped layer keys, in memory only
ttl_secs = 300
max_entries = 64
EOT
}

# emit FILE MODE [keep]: writes stdin to FILE (or prints it with --dry-run); "keep" leaves an
# existing file alone.
emit() {
  local file="$1" mode="$2" keep="${3:-}"
  if [ "$dry_run" = 1 ]; then
    printf '==> %s (mode %s%s)\n' "$file" "$mode" "${keep:+, kept if it exists}"
    cat
    echo
    return
  fi
  if [ -n "$keep" ] && [ -e "$file" ]; then
    cat >/dev/null
    echo "kept     $file (exists)"
    return
  fi
  mkdir -p "$(dirname "$file")"
  local tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$file"
  echo "wrote    $file"
}

containerd_snippet | emit "$conf_dir/layercrypt.toml" 0644
keyprovider_conf | emit "$ocicrypt_dir/ocicrypt_keyprovider.conf" 0644
node_toml | emit "$etc_dir/node.toml" 0600 keep
if [ "$dry_run" = 1 ]; then
  echo "==> $keys_dir (directory, mode 0700)"
else
  mkdir -p "$keys_dir" && chmod 0700 "$keys_dir"
  echo "ready    $keys_dir (put the node's private keys here)"
fi

for b in "$decoder" "$keyprovider"; do
  [ -x "$b" ] || echo "install.sh: note: $b is not installed yet" >&2
done
cat >&2 <<EOT
Next:
  1. Make sure /etc/containerd/config.toml imports $conf_dir/*.toml (imports = [...]).
  2. systemctl restart containerd
  3. Edit $etc_dir/node.toml: brokers and [credential] for group-encrypted images.
  4. CRI-O: systemctl edit crio, add
       [Service]
       Environment=OCICRYPT_KEYPROVIDER_CONFIG=$ocicrypt_dir/ocicrypt_keyprovider.conf
     podman / skopeo / buildah (ocicrypt 1.1+, e.g. skopeo 1.18):
       export OCICRYPT_KEYPROVIDER_CONFIG=$ocicrypt_dir/ocicrypt_keyprovider.conf
  5. Pull an encrypted image through the CRI (kubelet, crictl); see docs/worker-node.md.
EOT
