# Runs a command on a pseudo-terminal and answers its prompts as a person
# would: each answer is typed once its prompt has appeared and the terminal
# has stopped echoing (the prompt is printed before echo goes off).
#
#   python3 answer.py PROMPT ANSWER [PROMPT ANSWER ...] -- COMMAND [ARGS...]
#
# Prints everything the terminal showed; exits with the command's status (or
# 1 when a prompt never appeared or echo never went off within 20 s).
import os, pty, select, sys, termios, time

split = sys.argv.index("--")
pairs = sys.argv[1:split]
command = sys.argv[split + 1:]

pid, fd = pty.fork()
if pid == 0:
    os.execv(command[0], command)

seen = b""
deadline = time.time() + 20

def fail(why):
    sys.stdout.write(seen.decode(errors="replace"))
    sys.exit(why)

def read_some():
    global seen
    ready, _, _ = select.select([fd], [], [], 0.05)
    if ready:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            chunk = b""
        if not chunk:
            return False
        seen += chunk
    return True

for prompt, answer in zip(pairs[0::2], pairs[1::2]):
    start = len(seen)
    while prompt.encode() not in seen[start:]:
        if time.time() > deadline or not read_some():
            fail(f"the prompt {prompt!r} never appeared")
    while termios.tcgetattr(fd)[3] & termios.ECHO:
        if time.time() > deadline:
            fail(f"the terminal still echoed at {prompt!r}")
        time.sleep(0.01)
    os.write(fd, answer.encode() + b"\n")

while read_some():
    if time.time() > deadline:
        fail("the command did not end")
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
