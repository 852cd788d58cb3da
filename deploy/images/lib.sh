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
