"""The system test's machine: the Debian 12 arm64 image booted by QEMU, reached over ssh on 127.0.0.1.

KVM here is a nested software device that runs guests far slower than plain emulation, so the VM runs
under TCG. The guest's only network is QEMU's user-mode stack with ``restrict=on``: no route out, and
one forward from a free port of the host's loopback to the guest's sshd.
"""

import hashlib
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-image.sh"


def cached_image(cache: Path) -> Path:
    """The image built by build-image.sh, rebuilt only when that script changes (its inputs)."""
    key = hashlib.sha256(BUILD_SCRIPT.read_bytes()).hexdigest()[:16]
    image = cache / f"debian12-arm64-{key}"
    if not (image / "rootfs.ext4").exists():
        subprocess.run(["bash", str(BUILD_SCRIPT), str(image)], check=True)
    return image


@dataclass
class Vm:
    """Boots of the image, on a throw-away copy-on-write overlay, so the cached image stays clean; the
    overlay lives as long as this object, so a second ``boot()`` is a reboot of the same machine.

    ``disks`` are raw images attached after the root disk (/dev/vdb...); ``forwards`` are guest TCP ports
    reached from 127.0.0.1 on the host (``host_port(guest)``); ``kernel_args`` are added to the command line.
    cloud-init is installed in the image but disabled on the command line unless ``cloud_init`` is set.
    """

    image: Path
    workdir: Path
    memory_mb: int = 1024
    port: int = field(default_factory=free_port)
    disks: tuple[Path, ...] = ()
    forwards: dict[int, int] = field(default_factory=dict)
    kernel_args: tuple[str, ...] = ()
    cloud_init: bool = False
    process: subprocess.Popen | None = None

    def host_port(self, guest_port: int) -> int:
        return self.forwards.setdefault(guest_port, free_port())

    @property
    def key(self) -> Path:
        return self.image / "id_ed25519"

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    def ssh_command(self) -> list[str]:
        """ssh as the guest's `pi` user, as `make deploy` would reach a Pi (SSH= for deploy.sh)."""
        return [
            "ssh", "-i", str(self.key), "-p", str(self.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=10",
        ]  # fmt: skip

    def boot(self, timeout: float = 300, *, wait_for_ssh: bool = True) -> None:
        overlay = self.workdir / "overlay.qcow2"
        rootfs = self.image / "rootfs.ext4"
        if not overlay.exists():
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(rootfs), "-F", "raw", str(overlay)], check=True
            )
        append = ["root=/dev/vda", "rw", "console=ttyAMA0", "systemd.show_status=0", *self.kernel_args]
        if not self.cloud_init:
            append.append("cloud-init=disabled")
        forwards = [f"hostfwd=tcp:127.0.0.1:{self.port}-:22"]
        forwards += [f"hostfwd=tcp:127.0.0.1:{self.host_port(g)}-:{g}" for g in sorted(self.forwards)]
        disks = [arg for disk in self.disks for arg in ("-drive", f"file={disk},if=virtio,format=raw")]
        command = [
            "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", str(self.memory_mb),
            "-accel", "tcg,thread=multi", "-display", "none", "-monitor", "none",
            "-chardev", f"file,id=console,path={self.console},append=on", "-serial", "chardev:console",
            "-kernel", str(self.image / "vmlinuz"), "-initrd", str(self.image / "initrd.img"),
            "-append", " ".join(append),
            "-drive", f"file={overlay},if=virtio,format=qcow2", *disks,
            "-netdev", f"user,id=net0,restrict=on,{','.join(forwards)}",
            "-device", "virtio-net-pci,netdev=net0,romfile=",
            "-device", "virtio-rng-pci",
        ]  # fmt: skip
        with self.console.open("a") as console:
            console.write(f"\n===== boot: {' '.join(append)}\n")
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait_for_ssh:
            self.wait_for_ssh(timeout)

    def wait_for_ssh(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"qemu exited with {self.process.returncode}: {self.process.stderr.read()!r}")
            if self.ssh("true", check=False, timeout=30).returncode == 0:
                return
            time.sleep(1)
        raise TimeoutError(f"no ssh into the VM after {timeout:.0f} s; console: {self.console}")

    def ssh(
        self, command: str, *, check: bool = True, timeout: float = 300, input: bytes | str | None = None
    ) -> subprocess.CompletedProcess:
        """Run a shell command in the guest as `pi`; text output."""
        args = [*self.ssh_command(), "pi@127.0.0.1", command]
        text = not isinstance(input, bytes)
        try:
            result = subprocess.run(args, capture_output=True, text=text, timeout=timeout, input=input)
        except subprocess.TimeoutExpired as e:
            if check:
                raise
            return subprocess.CompletedProcess(args, 255, "", f"timed out: {e}")
        if check and result.returncode != 0:
            raise AssertionError(f"in the VM, `{command}` exited {result.returncode}: {result.stderr}{result.stdout}")
        return result

    def sudo(self, command: str, **kwargs) -> subprocess.CompletedProcess:
        return self.ssh(f"sudo bash -c {shlex.quote(command)}", **kwargs)

    def copy_tree(self, source: Path, target: str, owner: str = "") -> None:
        """Copy a host folder into the guest (tar over ssh); with ``owner``, as root into a 0750 folder of theirs."""
        tar = subprocess.run(["tar", "-C", str(source), "-cf", "-", "."], capture_output=True, check=True)
        target = shlex.quote(target)
        if owner:
            command = (
                f"sudo install -d -o {owner} -g {owner} -m 0750 {target} && "
                f"sudo tar -C {target} -xf - && sudo chown -R {owner}: {target}"
            )
        else:
            command = f"mkdir -p {target} && tar -C {target} -xf -"
        self.ssh(command, input=tar.stdout)

    def shutdown(self, timeout: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.sudo("systemctl poweroff", check=False, timeout=30)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
