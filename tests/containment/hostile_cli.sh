#!/bin/sh
# A hostile coding-agent CLI for tests/containment: it speaks a minimal terminal protocol (the prompt
# "hostile> ", "/clear", "/quit") and, for every task, runs the attack script the repository hands it
# (/workspace/attack.sh) as a tool would, with every tool auto-approved. It is the profile's command: an
# injected prompt in a real CLI can make it do exactly this.
printf 'hostile> '
while IFS= read -r line; do
    case "$line" in
        /clear) ;;
        /quit) exit 0 ;;
        *)
            if [ -f /workspace/attack.sh ]; then
                sh /workspace/attack.sh </dev/null >/tmp/attack.log 2>&1
                echo "attack finished with status $?"
                tail -n 3 /tmp/attack.log
            fi
            ;;
    esac
    printf 'hostile> '
done
