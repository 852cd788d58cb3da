#!/usr/bin/env bash
# Submit a task to kube and follow it until it runs, with nothing but Debian's amqp-tools
# (`apt-get install amqp-tools`: amqp-declare-queue, amqp-publish, amqp-get).
#
#   KUBE_AMQP_URL=amqp://guest:guest@localhost:5672/%2F bash submit.sh IMAGE [COMMAND...]
#
# Prints the manager's answer to the submit, then the task's state until it is running
# (exit 0) or has ended (exit 1 if failed). The task id is chosen here, so running the
# script twice with the same TASK_ID makes one task.
set -euo pipefail
url=${KUBE_AMQP_URL:-amqp://guest:guest@localhost:5672/%2F}
image=${1:?usage: submit.sh IMAGE [COMMAND...]}
shift
id=${TASK_ID:-shell-$$-$RANDOM}

json_list() {  # json_list WORD...: a JSON list of strings (no quotes or backslashes in them)
    local out="" word
    for word in "$@"; do out+="${out:+,}\"$word\""; done
    printf '[%s]' "$out"
}
if [ $# -gt 0 ]; then command=$(json_list "$@"); else command='["sleep","3600"]'; fi
spec="{\"id\":\"$id\",\"name\":\"shell\",\"image\":\"$image\",\"command\":$command,\"pull_policy\":\"${PULL_POLICY:-if-not-present}\"}"

# The manager answers on the queue named in reply_to. amqp-publish cannot wait for an
# answer, so the answers go to a server-named queue of ours, read with amqp-get.
replies=$(amqp-declare-queue --url "$url" --queue "")
trap 'amqp-delete-queue --url "$url" --queue "$replies" >/dev/null' EXIT

next_reply() {  # the next answer on our queue, waiting up to 10 s
    local tries=0
    until amqp-get --url "$url" --queue "$replies" 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -ge 50 ]; then echo "no answer from the manager in 10 s" >&2; return 1; fi
        sleep 0.2
    done
}

ask() {  # ask ROUTING_KEY BODY: publish to kube.commands with reply_to, print the answer
    amqp-publish --url "$url" --exchange kube.commands --routing-key "$1" \
        --content-type application/json --persistent --reply-to "$replies" --body "$2"
    next_reply
}

answer=$(ask task.submit "$spec")
echo "$answer"
case $answer in *'"ok":true'*) ;; *) exit 1 ;; esac

# query.task answers {"ok":true,"result":{"task":{..."state":"..."...},"events":[...]}};
# the first "state" is the task's.
for _ in $(seq 1 120); do
    state=$(ask query.task "{\"id\":\"$id\"}" | grep -o '"state":"[a-z]*"' | head -n 1 | cut -d'"' -f4)
    echo "$id $state"
    case $state in
        running|completed) exit 0 ;;
        failed) exit 1 ;;
    esac
    sleep 0.5
done
echo "$id is still $state after 60 s" >&2
exit 1
