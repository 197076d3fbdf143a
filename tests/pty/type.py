# Types into an interactive shell on a pseudo-terminal, as a user would, and
# waits for text to appear on its screen.
#
#   python3 type.py SHELL [ARGS...]
#
# Environment: SETUP (lines run first; the last must make the shell print
# READY), KEYS (typed next, e.g. "jwtagent token al\t"), EXPECT (the text to
# wait for after KEYS). Prints the screen's text (escape sequences removed);
# exits 0 when EXPECT appeared within 20 s, else 1.
import os, pty, re, select, sys, time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])

screen = b""

def text():
    t = screen.decode("utf-8", "replace")
    t = re.sub(r"\x1b\][^\x07]*\x07", "", t)          # OSC (titles)
    t = re.sub(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]", "", t)  # CSI
    t = re.sub(r"\x1b[()][0-9A-Za-z]|\x1b[=>78]", "", t)
    return t.replace("\r", "").replace("\x07", "")

def wait_for(what, seconds=20):
    global screen
    end = time.time() + seconds
    while time.time() < end:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                screen += os.read(fd, 65536)
            except OSError:
                break
            if what in text():
                return True
    return what in text()

os.write(fd, os.environ["SETUP"].encode() + b"\n")
ok = wait_for("READY")
if ok:
    screen = b""
    os.write(fd, os.environ["KEYS"].encode())
    ok = wait_for(os.environ["EXPECT"])
print(text())
os.kill(pid, 9)
sys.exit(0 if ok else 1)
