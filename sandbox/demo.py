"""`make demo`: the main job end to end, on the local App Service sandbox.

Starts the sandbox, installs this extension into the real `az` from the sandbox's extension index,
signs in, opens `az webapp remote-connection create` in the background, connects the real `ssh`
through the tunnel, runs a command inside the "container", copies a file with `scp` and checks it
arrived intact, stops the tunnel with Ctrl+C, opens the SCM site's browser SSH page (/webssh/host)
in headless Chromium, runs a command in its terminal and saves a screenshot, and tears everything
down.

The screenshot goes to build/demo/ (DEMO_OUTPUT_DIR overrides it); everything else is temporary.
"""
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from sandbox import Sandbox, sshd_unavailable_reason
from sandbox.browser import Browser, BrowserError, chromium_unavailable_reason

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import build_index  # noqa: E402  (tools/ is not a package)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AZ = os.path.join(ROOT, ".venv", "bin", "az")
APP = "linux-app"
OUTPUT_DIR = os.environ.get("DEMO_OUTPUT_DIR") or os.path.join(ROOT, "build", "demo")


def say(text=""):
    print(text, flush=True)


def step(number, text):
    say()
    say(f"\033[1m{number}. {text}\033[0m" if sys.stdout.isatty() else f"{number}. {text}")


def show(argv, background=False):
    say("   $ " + " ".join(shlex.quote(a) for a in argv) + (" &" if background else ""))


def run(argv, env, cwd):
    # az runs `python -m azure.cli`, which puts the working directory first on sys.path: run it
    # away from the source tree so that it loads the installed extension, as a user's az does.
    show(argv)
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=300)
    for line in (result.stdout + result.stderr).strip().splitlines():
        say("     " + line)
    if result.returncode != 0:
        raise SystemExit(f"demo failed: {argv[0]} {argv[1] if len(argv) > 1 else ''} exited {result.returncode}")
    return result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_env(workdir):
    """The container's password comes from an askpass helper, as a person would type it."""
    askpass = os.path.join(workdir, "askpass.sh")
    with open(askpass, "w") as f:
        f.write("#!/bin/sh\necho 'Docker!'\n")
    os.chmod(askpass, 0o700)
    return dict(os.environ, SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")


def ssh_options(workdir):
    # The first connection records the host key (as typing "yes" would); later ones check it.
    return ["-o", f"UserKnownHostsFile={os.path.join(workdir, 'known_hosts')}",
            "-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR"]


def wait_for_tunnel(proc, timeout=120):
    """Echo the command's output until it says the tunnel is ready; returns the port."""
    port = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("demo failed: `az webapp remote-connection create` ended early")
        say("     " + line.rstrip())
        if line.startswith("Port ") and line.rstrip().endswith("is open"):
            port = int(line.split()[1])
        if "Ctrl + C to close" in line and port:
            return port
    raise SystemExit("demo failed: the tunnel did not open in time")


# The terminal's last line is a shell prompt (root's ends in "#").
PROMPT_JS = "/[#$]$/.test(webssh.screenText().trimEnd())"


def browser_ssh(sb, app, url):
    """The SCM site's /webssh/host in headless Chromium (certificate checks on, the sandbox's CA
    trusted): sign in, run a command in the page's terminal, save a screenshot. Returns its path."""
    instance = app.instance_names[0]
    command = "hostname; uname -sr"
    with Browser(ca_file=sb.ca_file, width=1000, height=600) as browser, browser.new_page() as page:
        say(f"   headless {browser.version}, trusting the sandbox's CA")
        say(f"   open {url}  (signed in with the app's deployment credentials)")
        page.basic_auth(app.basic_user, app.basic_password)
        status = page.goto(url)
        if status != 200:
            raise SystemExit(f"demo failed: {url} answered {status}: {page.text()[:300]}")
        page.wait_for("window.webssh && window.webssh.state === 'connected'", timeout=30)
        say("   the page says: " + page.evaluate("document.getElementById('status').textContent"))
        # Type once the shell has shown its prompt, as a person would (keys typed earlier are
        # kept too, but they would show up above the prompt in the screenshot).
        page.wait_for(PROMPT_JS, timeout=15,
                      describe=lambda: "terminal:\n" + page.evaluate("webssh.screenText()"))
        say(f"   type into its terminal: {command}")
        page.type_text(command)
        page.press_enter()
        # The output is the line that is the instance's name alone (the prompt and the echoed
        # command hold it too, but not alone), followed by uname's.
        lines = page.wait_for(
            "(() => { const l = webssh.screenText().split('\\n').map(s => s.trimEnd());"
            " const i = l.indexOf(%s); return i >= 0 && i + 1 < l.length && l[i + 1] ? l.slice(i, i + 2)"
            " : null; })()" % json.dumps(instance), timeout=15,
            describe=lambda: "terminal:\n" + page.evaluate("webssh.screenText()"))
        for line in lines:
            say("     " + line)
        os.makedirs(OUTPUT_DIR, exist_ok=True)
        return page.screenshot(os.path.join(OUTPUT_DIR, f"browser-ssh-{instance}.png"))


def main():
    reason = sshd_unavailable_reason()
    if reason:
        raise SystemExit(f"make demo needs the sandbox's sshd: {reason}")
    reason = chromium_unavailable_reason()
    if reason:
        raise SystemExit(f"make demo needs Chromium for its browser step: {reason}")
    workdir = tempfile.mkdtemp(prefix="webapp-demo-")
    say("webapp demo: SSH into an App Service on Linux container through `az webapp remote-connection`.")
    say("Everything runs on this machine: the sandbox stands in for Azure's sign-in, Resource Manager,")
    say("the app's SCM (Kudu) site and the container's sshd, all on loopback with verified TLS.")
    tunnel = None
    try:
        step(1, "Build the extension wheel (the native tunnel engine is inside it)")
        wheel = build_index.build_wheel(os.path.join(workdir, "dist"))
        say(f"   built {os.path.basename(wheel)}")

        step(2, "Start the local App Service sandbox")
        with Sandbox(os.path.join(workdir, "sandbox")) as sb:
            app = sb.app(APP)
            say(f"   Resource Manager and sign-in at {sb.arm_url}")
            say(f"   app {APP} in resource group {sb.resource_group}: SCM site {app.scm_url}, "
                f"instance {app.instance_names[0]} running a real OpenSSH sshd")
            shutil.copy(wheel, sb.extension_dir)
            build_index.write_index(sb.extension_dir, base_url=sb.extension_url(""))

            step(3, "Sign in with the real az (a service principal against the sandbox cloud)")
            config_dir = os.path.join(workdir, "az")
            env = sb.az_login(config_dir, az=AZ)
            say(f"   az cloud register + az login done; AZURE_CONFIG_DIR={config_dir}")

            step(4, "Add the extension by name, as the docs say (from the sandbox's extension index)")
            run([AZ, "extension", "add", "--name", "webapp", "--yes"], env, workdir)
            run([AZ, "extension", "list", "--query", "[].{name:name, version:version}", "-o", "table"], env, workdir)

            step(5, "Open the remote connection in the background")
            port = free_port()
            argv = [AZ, "webapp", "remote-connection", "create", "--resource-group", sb.resource_group,
                    "-n", APP, "-p", str(port)]
            show(argv, background=True)
            tunnel = subprocess.Popen(argv, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, text=True, start_new_session=True)
            port = wait_for_tunnel(tunnel)

            sshenv = ssh_env(workdir)
            step(6, "Connect the real ssh client through the tunnel and run a command in the container")
            run(["ssh", "-p", str(port), *ssh_options(workdir), "root@127.0.0.1",
                 "echo \"hello from $(hostname), logged in as $(whoami)\"; uname -sr"], sshenv, workdir)

            step(7, "Copy a file into the container with scp and check it arrived intact")
            src = os.path.join(workdir, "payload.bin")
            with open(src, "wb") as f:
                f.write(os.urandom(8 << 20))
            with open(src, "rb") as f:
                local_digest = hashlib.sha256(f.read()).hexdigest()
            remote = "/tmp/copied-into-container.bin"        # the container's own /tmp
            run(["scp", "-P", str(port), *ssh_options(workdir), src, f"root@127.0.0.1:{remote}"], sshenv, workdir)
            result = run(["ssh", "-p", str(port), *ssh_options(workdir), "root@127.0.0.1",
                          f"sha256sum {shlex.quote(remote)}"], sshenv, workdir)
            remote_digest = result.stdout.split()[0]
            if remote_digest != local_digest:
                raise SystemExit("demo failed: the copied file differs from the original")
            say(f"   8 MiB copied; sha256 matches on both sides ({local_digest[:16]}...)")

            step(8, "Press Ctrl+C on the tunnel (SIGINT): it closes cleanly")
            os.killpg(tunnel.pid, signal.SIGINT)
            rest, _ = tunnel.communicate(timeout=30)
            for line in rest.strip().splitlines():
                say("     " + line)
            say(f"   az exited with status {tunnel.returncode}")
            if tunnel.returncode != 0:
                raise SystemExit("demo failed: the tunnel did not exit cleanly")
            tunnel = None

            step(9, "Ask az for the browser SSH page, open it in headless Chromium and run a command there")
            # No browser for az to open here, so `browse` prints the page's URL: the demo's Chromium opens it.
            no_browser = {k: v for k, v in env.items() if k not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")}
            url = run([AZ, "webapp", "remote-connection", "browse", "--resource-group", sb.resource_group, "-n", APP],
                      no_browser, workdir).stdout.strip()
            try:
                shot = browser_ssh(sb, app, url)
            except BrowserError as e:
                raise SystemExit(f"demo failed: the browser step: {e}")
            say(f"   Browser SSH screenshot: {shot}")

            step(10, "Tear the sandbox down")
        say("   every sandbox process has stopped")
        say()
        say("Done. Against a real app, the same commands are in README.md under 'Using it with a real Azure app'.")
    finally:
        if tunnel is not None and tunnel.poll() is None:
            os.killpg(tunnel.pid, signal.SIGKILL)
            tunnel.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
