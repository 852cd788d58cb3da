# Sourced by the image scripts in this folder, which set IMAGE first:
#   image_begin "$0" "$@"   parses --force and --help; exits 0 if IMAGE is there already
#   image_end               once the new image has the tag: drops the one it replaced
# shellcheck shell=bash

image_begin() {
    local script=$1 arg force=0
    shift
    for arg in "$@"; do
        case "$arg" in
            --force) force=1 ;;
            -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$script"; exit 0 ;;
            *) echo "$(basename "$script"): unknown argument: $arg" >&2; exit 2 ;;
        esac
    done
    IMAGE_PREVIOUS="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
    if [[ $force -eq 0 && -n "$IMAGE_PREVIOUS" ]]; then
        echo "$(basename "$script"): $IMAGE exists (use --force to rebuild)"
        exit 0
    fi
}

image_end() {
    # Unless a container still uses it: then it stays, untagged, and `rm` says why on stderr.
    if [[ -n "$IMAGE_PREVIOUS" && "$IMAGE_PREVIOUS" != "$(docker image inspect --format '{{.Id}}' "$IMAGE")" ]]; then
        docker image rm "$IMAGE_PREVIOUS" >/dev/null || true
    fi
}

debian_rootfs() {  # debian_rootfs OUT.tar PACKAGES [mmdebstrap options...]
    # A slim Debian bookworm root filesystem as a tar file. No mirror named: mmdebstrap's
    # default Debian mirror, with the updates and security suites it adds for a stable
    # release. The merged-usr hook sets up merged /usr itself, which spares the image the
    # usrmerge package and the whole of perl it pulls in; man pages, docs (but their
    # copyright files) and translations are left out, as in the official slim images.
    # A file, not a pipe into `docker import`: a build that fails halfway must not leave
    # a tagged, half-filled image.
    local out=$1 packages=$2
    shift 2
    if ! command -v mmdebstrap >/dev/null; then
        echo "mmdebstrap not found; install Debian's mmdebstrap" >&2
        return 1
    fi
    mmdebstrap --quiet --variant=minbase \
        --include="$packages" \
        --aptopt='APT::Install-Recommends "false"' \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$@" bookworm "$out"
}
