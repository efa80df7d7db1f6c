"""Help text (YAML) for ``az webapp remote-connection``."""

from knack.help_files import helps  # pylint: disable=unused-import

helps['webapp remote-connection'] = """
type: group
short-summary: Open TCP tunnels, SSH sessions and shells to the containers of App Service on Linux apps.
long-summary: >
    Everything runs over the app's SCM (Kudu) site, authenticated with the app's publishing
    credentials or, when Basic auth is disabled for SCM, with the Microsoft Entra token that
    az holds. `create`, `ssh` and `ssh-config` tunnel to the container's sshd (port 2222): every
    local connection gets its own WebSocket, so several ssh, scp or sftp sessions (or a debugger)
    can share one tunnel. `exec` and `cp` need no sshd: a shell, commands with their exit status
    and file copies through the SCM site's exec channel. `browse` opens the portal's browser SSH
    page; `doctor` tells which way works and why another does not.
"""

helps['webapp remote-connection exec'] = """
type: command
short-summary: Open a shell, or run a command, in the container of a Linux web app without sshd, through its SCM site.
long-summary: >
    Uses the SCM site's exec channel (wss://<scm-host>/exec/shell, the one `az webapp exec` uses), so
    the container needs no SSH server: use it for custom containers without sshd, `ssh` for port
    forwarding, scp, sftp and your own keys, `browse` for a shell in a browser. Without a command:
    an interactive shell in a raw terminal: every key goes to the remote shell, Ctrl+C included;
    `exit` (or Ctrl+D) ends it, Enter then ~. leaves it from this side; window resizes follow; the
    terminal is restored however it ends. With a command after `--`: it runs by /bin/sh -c (or
    --shell) and its standard output streams to yours, its standard error comes once it has ended
    (for progress written to standard error, run `-- 'CMD 2>&1'`), and az exits with its exit status. Its standard input is yours when yours is a pipe or a file,
    else empty. With --instance all (or NAME,NAME) it runs on each instance (8 at a time): output
    lines prefixed with the instance name, or one record per instance with --output; the exit
    status is the worst instance's, and an instance that cannot be reached is reported with status
    255. Ctrl+C interrupts the remote command (exit status 130). Needs /bin/sh, base64 and stty in
    the container for commands (coreutils or busybox). SSH turned off for the app does not stop it.
    --container picks a sidecar of an app with site containers instead of its main container;
    whether Azure's SCM site honours it is not published (the sandbox's does), and where it does
    not, the error says so.
examples:
  - name: Open an interactive shell in the container.
    text: |
        az webapp remote-connection exec -g MyResourceGroup -n MyWebApp
  - name: A shell in the SCM (Kudu) site's own container, or with another shell.
    text: |
        az webapp remote-connection exec -g MyResourceGroup -n MyWebApp --target kudu
        az webapp remote-connection exec -g MyResourceGroup -n MyWebApp --shell /bin/sh
  - name: A shell in a sidecar (one of the app's site containers), where the SCM site lets you choose one.
    text: |
        az webapp remote-connection exec -g MyResourceGroup -n MyWebApp --container otel -- ls /etc/otelcol
  - name: Run one command; its output and exit status are the command's.
    text: |
        az webapp remote-connection exec -g MyResourceGroup -n MyWebApp -- cat /home/LogFiles/docker.log
  - name: Feed the command your standard input.
    text: |
        az webapp remote-connection exec -g MyResourceGroup -n MyWebApp -- 'cat > /home/site/config.json' < config.json
  - name: Run one command on every instance; each output line starts with the instance name.
    text: |
        az webapp remote-connection exec -g MyResourceGroup -n MyWebApp --instance all -- df -h /home
  - name: One JSON record per instance (instance, exitStatus, stdout, stderr, seconds, error).
    text: |
        az webapp remote-connection exec -g MyResourceGroup -n MyWebApp --instance INSTANCE1,INSTANCE2 -o json -- uptime
"""

helps['webapp remote-connection cp'] = """
type: command
short-summary: Copy a file or directory to or from the container of a Linux web app without sshd, through its SCM site.
long-summary: >
    One of SOURCE and DESTINATION is in the container: `:/path` (in the app named by --name or
    --ids) or `APP:/path`; the other is local (`C:\\file` and `C:/file` are local paths on Windows:
    an app name has at least two characters; write a local name that starts with a colon as
    `./:name`). Container paths are absolute. A directory as DESTINATION takes the file under its
    own name. The bytes go as base64 through the exec channel's terminal and are checked on arrival
    (size, and SHA-256 where the container has sha256sum); they are written to a temporary file
    beside the destination and renamed into place only when complete, so a failed copy leaves no
    partial file. With --recursive a directory goes as one tar archive, checked the same way, and is
    unpacked beside the destination and renamed into place (or over a directory already there); a
    download unpacks only what stays inside the destination. A progress bar is shown on standard
    error when it is a terminal. Uses the same
    channel as `az webapp remote-connection exec` (no sshd; base64 and stty in the container); with
    sshd, `scp` through `az webapp remote-connection ssh-config` is faster.
examples:
  - name: Upload a file into a directory of the container.
    text: |
        az webapp remote-connection cp -g MyResourceGroup -n MyWebApp ./app.zip :/home/site/
  - name: Download a file (APP:/path names the app).
    text: |
        az webapp remote-connection cp -g MyResourceGroup MyWebApp:/home/LogFiles/docker.log ./docker.log
  - name: From one instance of a scaled-out app, or from a slot.
    text: |
        az webapp remote-connection cp -g MyResourceGroup -n MyWebApp --instance INSTANCE_NAME :/tmp/dump.bin .
        az webapp remote-connection cp -g MyResourceGroup -n MyWebApp --slot staging :/home/site/wwwroot/web.config .
  - name: A directory with all it holds, up and down.
    text: |
        az webapp remote-connection cp -g MyResourceGroup -n MyWebApp --recursive ./static :/home/site/wwwroot/
        az webapp remote-connection cp -g MyResourceGroup -n MyWebApp -r :/home/LogFiles ./logs
  - name: On Windows, to a local drive path.
    text: |
        az webapp remote-connection cp -g MyResourceGroup -n MyWebApp :/home/LogFiles/app.log C:\\logs\\app.log
"""

helps['webapp remote-connection create'] = """
type: command
short-summary: Open a tunnel from a local port to the SSH server (or remote debugger) of a Linux web app.
long-summary: >
    Checks that the app runs on Linux and that its container answers, then listens on a local
    port until Ctrl+C, SIGTERM or --timeout (which closes the tunnel with every session still
    open through it). Connect with `ssh root@127.0.0.1 -p PORT` (password `Docker!` on the
    built-in images). Add --verbose to log each connection. Ctrl+C before the tunnel is ready
    exits with status 130. Across a restart of the app the tunnel stays: connections made meanwhile
    wait for the container (at most 120 seconds) and then go through. With --background the tunnel
    runs in a process of its own and the command returns once the port is open (for scripts and
    CI); `az webapp remote-connection close` ends it.
examples:
  - name: Open a tunnel on a free local port, then connect with ssh.
    text: |
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp
  - name: Open a tunnel on local port 21382 in the background (as in Cloud Shell).
    text: |
        az webapp remote-connection create --resource-group MyResourceGroup --name MyWebApp --port 21382 &
        ssh root@127.0.0.1 -p 21382
  - name: Open a tunnel to a deployment slot.
    text: |
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp --slot staging
  - name: Open a tunnel to one instance of a scaled-out app.
    text: |
        az webapp list-instances -g MyResourceGroup -n MyWebApp --query "[].name" -o tsv
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp --instance INSTANCE_NAME
  - name: Keep the tunnel open for 10 minutes only (sessions still open then are cut).
    text: |
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp --timeout 600
  - name: Open a tunnel to an app or slot given by its resource ID.
    text: |
        az webapp remote-connection create --ids $(az webapp show -g MyResourceGroup -n MyWebApp --query id -o tsv)
  - name: A custom container configured as the documentation says offers only CBC ciphers; the ssh line create prints then carries the option that adds one (scp and sftp take it too; scp also needs -O without an sftp subsystem).
    text: |
        ssh -o Ciphers=+aes128-cbc root@127.0.0.1 -p 21382
        scp -O -o Ciphers=+aes128-cbc -P 21382 ./app.log root@127.0.0.1:/home/
  - name: On an app with remote debugging enabled, tunnel to SSH instead of the debugger.
    text: |
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp --target-port 2222
  - name: Tunnel to another port in the container, listening on all local IPv4 addresses.
    text: |
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp --target-port 9229 --bind 0.0.0.0 -p 9229
  - name: In a script or CI job, open a tunnel in the background, use it, and close it.
    text: |
        port=$(az webapp remote-connection create -g MyResourceGroup -n MyWebApp --background --query port -o tsv)
        scp -P $port ./app.log root@127.0.0.1:/home/
        az webapp remote-connection close --port $port
  - name: Start it with & and wait for its ready file, which holds the port and pid as JSON.
    text: |
        az webapp remote-connection create -g MyResourceGroup -n MyWebApp --ready-file /tmp/tunnel.json &
        while [ ! -s /tmp/tunnel.json ]; do sleep 1; done
  - name: Relay standard input and output instead of a port, as OpenSSH's ProxyCommand (ssh-config writes this line).
    text: |
        ssh -o ProxyCommand="az webapp remote-connection create -g MyResourceGroup -n MyWebApp --stdio" root@MyWebApp
"""

helps['webapp remote-connection close'] = """
type: command
short-summary: Close a tunnel that `az webapp remote-connection create --background` (or `--ready-file`) started.
long-summary: >
    Finds the background tunnel by its local port or process id among those started with this az
    configuration (AZURE_CONFIG_DIR) with --background, or with --ready-file (`create ... &` in a
    script; on Windows such a tunnel ends with Ctrl+C in its console instead), checks that the process is still that tunnel (a process id the
    system has reused is never signalled), ends it as Ctrl+C would (SIGTERM; on Windows Ctrl+Break to
    its process group), waits for it to exit and says so. A port or process id that is no background
    tunnel of this configuration is an error that lists those running.
examples:
  - name: Close the background tunnel on local port 21382.
    text: |
        az webapp remote-connection close --port 21382
  - name: Close it by the process id `create --background` printed.
    text: |
        az webapp remote-connection close --pid 12345
  - name: Close every background tunnel of this az configuration (at the end of a CI job).
    text: |
        az webapp remote-connection close --all
"""

helps['webapp remote-connection ssh'] = """
type: command
short-summary: Open an SSH session to the container of a Linux web app in one step.
long-summary: >
    Opens a tunnel on a free loopback port and runs the system OpenSSH client (ssh, OpenSSH 8.4 or
    later) through it. ssh owns the terminal: Ctrl+C goes to the remote program and Ctrl+D (or
    `exit`) ends the session; the tunnel closes when ssh exits, and the exit status is ssh's.
    Arguments after `--` are passed to ssh: options (-L, -R, -v, -i ...) and a remote command
    (before `--`, -i is --instance and -o is --output). With --instance all (or NAME,NAME) and a
    command, the command runs on each instance at once, through a tunnel of its own; an instance
    that cannot be reached is reported with its reason (exit status 255) while the others run.
    The container's password (`Docker!` on the built-in images) is supplied through SSH_ASKPASS,
    never on a command line, unless you pass an identity of your own with -i. `Ciphers
    +aes128-cbc,aes256-cbc` is added for containers that offer only CBC ciphers (as the
    documentation configures custom images); OpenSSH's defaults still win where offered. When it
    does not connect, `az webapp remote-connection doctor` says which hop fails.
    Host keys are checked: the first connection records the container's key under a HostKeyAlias
    for the app in AZURE_CONFIG_DIR/webapp/known_hosts, and a changed key is refused (remove it with
    the `ssh-keygen -R` line the error shows when you know why it changed).
examples:
  - name: Open an interactive shell in the container.
    text: |
        az webapp remote-connection ssh -g MyResourceGroup -n MyWebApp
  - name: Run one command; its output and exit status are the command's.
    text: |
        az webapp remote-connection ssh -g MyResourceGroup -n MyWebApp -- cat /home/LogFiles/docker.log
  - name: Forward local port 8080 to port 80 in the container while the session lasts.
    text: |
        az webapp remote-connection ssh -g MyResourceGroup -n MyWebApp -- -L 8080:localhost:80
  - name: Connect to a slot, or to one instance of a scaled-out app.
    text: |
        az webapp remote-connection ssh -g MyResourceGroup -n MyWebApp --slot staging
        az webapp remote-connection ssh -g MyResourceGroup -n MyWebApp --instance INSTANCE_NAME
  - name: Sign in with your own key (its public key must be in the container's authorized_keys).
    text: |
        az webapp remote-connection ssh -g MyResourceGroup -n MyWebApp -- -i ~/.ssh/id_ed25519
  - name: Run one command on every instance at once; each output line starts with the instance name, and the exit status is the worst instance's.
    text: |
        az webapp remote-connection ssh -g MyResourceGroup -n MyWebApp --instance all -- df -h /home
  - name: Run it on two instances, one JSON record per instance (instance, exitStatus, stdout, stderr, seconds, error).
    text: |
        az webapp remote-connection ssh -g MyResourceGroup -n MyWebApp --instance INSTANCE1,INSTANCE2 -o json -- uptime
"""

helps['webapp remote-connection browse'] = """
type: command
short-summary: Open the app's browser SSH page (the SCM site's /webssh/host) in your default browser.
long-summary: >
    The page is a terminal in the container, served by the app's SCM (Kudu) site: sign in there
    as the browser asks. It needs nothing on this machine but a browser, but it logs in with the
    portal's fixed list of algorithms (ciphers aes128-cbc, 3des-cbc, aes256-cbc, aes128-ctr,
    aes192-ctr, aes256-ctr; MACs hmac-sha1, hmac-sha1-96, hmac-md5-96), so a custom image whose
    sshd_config offers none of them fails there while `az webapp remote-connection ssh` works
    (`az webapp remote-connection doctor` tells). Where this machine has no browser (an SSH
    session, a container, Cloud Shell), the URL is printed instead: open it on a machine that
    has one. The URL holds no secret.
examples:
  - name: Open a shell in the app's container in your browser.
    text: |
        az webapp remote-connection browse -g MyResourceGroup -n MyWebApp
  - name: The page for one instance of a scaled-out app, or for a slot.
    text: |
        az webapp remote-connection browse -g MyResourceGroup -n MyWebApp --instance INSTANCE_NAME
        az webapp remote-connection browse -g MyResourceGroup -n MyWebApp --slot staging
  - name: Keep the URL in a variable (it is printed on standard output where no browser opens).
    text: |
        az webapp remote-connection browse -g MyResourceGroup -n MyWebApp 2>/dev/null
"""

helps['webapp remote-connection doctor'] = """
type: command
short-summary: Check every hop between this machine and the SSH server of a Linux web app, and say how to fix the first that fails.
long-summary: >
    Checks, in order: your sign-in and permission to read the app (Azure Resource Manager); that
    the app exists, runs on Linux and is running; that SSH is turned on for it (its SSH setting,
    sshEnabled, and any Azure Policy that keeps it off); that its SCM host is reachable from here
    (it resolves, its access restrictions or private endpoint let this machine in, its certificate
    verifies: behind a proxy or private CA, set REQUESTS_CA_BUNDLE); that the SCM site accepts the
    credentials (the publishing credentials with Basic auth, or your Microsoft Entra token when
    Basic auth is disabled, which needs a role with Microsoft.Web/sites/publish/Action); the app's
    containers (main and sidecars) and their states; then, for each instance: GetStatus (state,
    canReachPort, port), the
    WebSocket upgrade, an SSH banner through the tunnel, the container's SSH algorithms (from its
    key-exchange message) against this machine's OpenSSH and the portal's browser SSH (which needs
    aes128-cbc, 3des-cbc, aes256-cbc or an aes-ctr cipher, hmac-sha1, hmac-sha1-96 or
    hmac-md5-96, an ECDH or group-exchange key exchange and an ECDSA or ssh-rsa host key), root login with the password `Docker!`, and the sftp subsystem (without it sftp
    fails, and so does OpenSSH 9's scp unless given -O). These are the hops the other commands go
    through, with the same checks. Each hop works (OK), works with a warning (WARN: an algorithm
    list the portal cannot use, no sftp subsystem) or is broken (FAIL); the first broken hop stops
    the checks of its instance; a sidecar that is not running is a warning. Prints a readable
    table; --output json gives the same as one record for scripts, with the overall verdict (ok,
    warning or fail). Exits with status 1 when a hop is broken, 0 otherwise (warnings do not count
    as failures).
examples:
  - name: Check why `ssh` or `create` does not reach an app.
    text: |
        az webapp remote-connection doctor -g MyResourceGroup -n MyWebApp
  - name: Check one instance of a scaled-out app, or a slot.
    text: |
        az webapp remote-connection doctor -g MyResourceGroup -n MyWebApp --instance INSTANCE_NAME
        az webapp remote-connection doctor -g MyResourceGroup -n MyWebApp --slot staging
  - name: In a script, the failing hops as JSON (exit status 1 when any fails), or only the overall verdict.
    text: |
        az webapp remote-connection doctor -g MyResourceGroup -n MyWebApp -o json --query "checks[?status=='fail']"
        az webapp remote-connection doctor -g MyResourceGroup -n MyWebApp --query verdict -o tsv
"""

helps['webapp remote-connection ssh-config'] = """
type: command
short-summary: Write an ssh_config Host block so that `ssh APP`, scp, sftp, rsync and editors reach the app.
long-summary: >
    The block runs `az webapp remote-connection create --stdio` as its ProxyCommand (through this
    az's Python, so it works from any directory and needs no local port), logs in as root and pins
    the container's host key exactly as `az webapp remote-connection ssh` does (same HostKeyAlias and
    known_hosts file). The block does not hold a password: type `Docker!` when asked (built-in images),
    set SSH_ASKPASS yourself, or add an IdentityFile line for a key in the container's authorized_keys.
    The ProxyCommand names the subscription, and AZURE_CONFIG_DIR when it is not the default.
    With --file the block goes into FILE.az-webapp, which an Include line at the top of FILE reads
    first: OpenSSH keeps the first value it finds, so the block wins over `Host *` and `Match`
    blocks. Running the command again replaces the block in place. A Host block of the same name
    that this command did not write is never replaced (choose another --host), and a missing
    directory is not created.
examples:
  - name: Print the block for an app.
    text: |
        az webapp remote-connection ssh-config -g MyResourceGroup -n MyWebApp
  - name: Add it to your ssh configuration, then use ssh, scp and rsync by the app's name.
    text: |
        az webapp remote-connection ssh-config -g MyResourceGroup -n MyWebApp --file ~/.ssh/config
        ssh MyWebApp
        scp ./app.log MyWebApp:/home/
        rsync -a -e ssh ./site/ MyWebApp:/home/site/wwwroot/
  - name: Copy to a container whose sshd has no sftp subsystem (OpenSSH 9's scp speaks SFTP unless given -O).
    text: |
        scp -O ./app.log MyWebApp:/home/
  - name: A block for a slot under a name of your choice.
    text: |
        az webapp remote-connection ssh-config -g MyResourceGroup -n MyWebApp --slot staging --host myapp-staging --file ~/.ssh/config
"""
