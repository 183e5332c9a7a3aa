//! A real introspection fixture: a Debian kernel (the host's own by default, or any
//! [`Kernel`] unpacked from Debian's archive, see `tests/fetch-kernels.sh`) booted under
//! QEMU (TCG) with a busybox initramfs, on a [`Machine`] (x86-64 with 4- or 5-level paging,
//! or i386), dumped with QMP `dump-guest-memory` (a QEMU ELF core); the guest's RAM is a
//! shared memory-backend file, kept too (a live QEMU guest's RAM, `qemu-shm`).
//!
//! Available to this crate's unit tests and, with the cargo feature `test-fixtures`, to
//! other crates' tests (the workspace's integration tests use it).
//!
//! The guest mounts `/proc`, `/sys` and debugfs, loads [`MODULES`] and any extra modules
//! it is given (e.g. a vmark-marked module), starts a background `sleep`, and prints its
//! own view to the serial console **before** the dump is taken, each part between
//! `VMARK-<PART>-BEGIN` and `VMARK-<PART>-END` lines (see [`Fixture::section`]):
//!
//! - `PS`: `ps -o pid,ppid,comm`, with the `ps` process's own pid on the END line
//!   (`VMARK-PS-END ps=<pid>`: it has exited by the time the dump is taken);
//! - `MODULES`: `/proc/modules`;
//! - `VALUES`: `/sys/kernel/debug/vmark_demo/values` when `examples/marks-demo` is loaded;
//! - `UNAME`: `uname -a` (says `PREEMPT_RT` on an RT kernel);
//! - `LA57`: `la57` if `/proc/cpuinfo` has the flag (the kernel clears it unless it runs
//!   with 5-level paging), else nothing;
//! - `KALLSYMS`: the `/proc/kallsyms` lines of [`KALLSYMS`] and of every module symbol;
//! - `IOMEM`: the `Kernel code/rodata/data/bss` lines of `/proc/iomem` (physical).
//!
//! PID 1 is `busybox` throughout (the init script execs busybox's shell before anything
//! else), so the process list does not change names between the listing and the dump.
//!
//! Built once per kernel release, machine, init script and set of extra modules, and
//! cached under `target/introspect-fixtures/` (`<release>[-la57|-i386]-<tag>.elf`, `.ram`
//! and `.serial`), about 10–60 s to build. Missing prerequisites are errors naming
//! `tests/install-deps.sh`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The modules the guest loads from the kernel's modules directory (`kernel/lib/NAME.ko`,
/// or `.ko.xz` / `.ko.zst` decompressed with `xz` / `zstd`).
pub const MODULES: [&str; 2] = ["crc7", "crc8"];

/// Kernel symbols whose `/proc/kallsyms` lines the guest prints (section `KALLSYMS`). The
/// data symbols are listed only by kernels built with `CONFIG_KALLSYMS_ALL` (Debian's
/// i386 kernels are not); `_text` and `schedule` are in every kallsyms.
pub const KALLSYMS: [&str; 6] = [
    "_text",
    "schedule",
    "linux_banner",
    "init_task",
    "jiffies",
    "init_uts_ns",
];

/// Longest wait for the guest to print its view (TCG boots of big kernels are slow).
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// A kernel to boot: its image, its modules directory and its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The bootable image (`vmlinuz-RELEASE`).
    pub image: PathBuf,
    /// `lib/modules/RELEASE` of that kernel (where [`MODULES`] are taken from).
    pub modules: PathBuf,
    /// `uname -r`.
    pub release: String,
    /// The guest's busybox (static), when not the host's (another architecture's).
    pub busybox: Option<PathBuf>,
}

impl Kernel {
    /// The host's newest `/boot/vmlinuz-*`, with `/lib/modules/RELEASE`.
    pub fn host() -> Result<Kernel, String> {
        let (image, release) = kernel()?;
        Ok(Kernel {
            image,
            modules: Path::new("/lib/modules").join(&release),
            release,
            busybox: None,
        })
    }

    /// A kernel `dpkg -x`'d into `root` (`root/boot/vmlinuz-RELEASE`,
    /// `root/lib/modules/RELEASE`, and `root/bin/busybox` for another architecture's
    /// kernel), as `tests/fetch-kernels.sh` leaves it.
    pub fn unpacked(root: &Path, release: &str) -> Result<Kernel, String> {
        let image = root.join(format!("boot/vmlinuz-{release}"));
        let modules = root.join(format!("lib/modules/{release}"));
        if !image.is_file() || !modules.is_dir() {
            return Err(format!(
                "{} has no boot/vmlinuz-{release} or lib/modules/{release}: run tests/fetch-kernels.sh",
                root.display()
            ));
        }
        let busybox = Some(root.join("bin/busybox")).filter(|b| b.is_file());
        Ok(Kernel {
            image,
            modules,
            release: release.to_string(),
            busybox,
        })
    }
}

/// The guest CPU architecture QEMU emulates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `qemu-system-x86_64`.
    #[default]
    X86_64,
    /// `qemu-system-i386` (32-bit and PAE kernels).
    I386,
}

/// How QEMU runs the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Machine {
    /// CPU architecture.
    pub arch: Arch,
    /// Offer 5-level paging (`-cpu qemu64,+la57`, x86-64 only); the kernel then runs with it.
    pub la57: bool,
    /// Give the guest QEMU's `vmcoreinfo` device (the guest must load `qemu_fw_cfg`, an
    /// extra module): the dump then carries the kernel's VMCOREINFO note, which drgn needs
    /// to open a QEMU dump.
    pub vmcoreinfo: bool,
}

impl Machine {
    /// The file-name tag of this machine (`""` for the default).
    fn tag(&self) -> String {
        let mut t = String::new();
        if self.arch == Arch::I386 {
            t.push_str("-i386");
        }
        if self.la57 {
            t.push_str("-la57");
        }
        if self.vmcoreinfo {
            t.push_str("-vmci");
        }
        t
    }

    fn qemu(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::I386 => "qemu-system-i386",
        }
    }

    fn cpu(&self) -> Option<&'static str> {
        match (self.arch, self.la57) {
            (Arch::X86_64, true) => Some("qemu64,+la57"),
            // 5-level paging needs long mode: an i386 guest has none to offer.
            _ => None,
        }
    }
}

/// What every missing-prerequisite error says.
pub const INSTALL_HINT: &str = "run `sudo tests/install-deps.sh`";

/// A built fixture.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The QEMU ELF dump.
    pub dump: PathBuf,
    /// The file QEMU kept the guest's RAM in (`memory-backend-file,share=on`), as it was
    /// when the dump was taken: what a live QEMU guest's RAM looks like (`qemu-shm`).
    pub ram: PathBuf,
    /// The guest's serial console output up to the dump (`\r` removed).
    pub serial: String,
    /// Where that output is kept.
    pub serial_path: PathBuf,
    /// The guest kernel's release.
    pub release: String,
}

impl Fixture {
    /// The lines the guest printed between `VMARK-<part>-BEGIN` and `VMARK-<part>-END`,
    /// and the rest of the END line (e.g. `ps=57`).
    pub fn section(&self, part: &str) -> Option<(Vec<&str>, &str)> {
        let begin = format!("VMARK-{part}-BEGIN");
        let end = format!("VMARK-{part}-END");
        let mut lines = self.serial.lines();
        lines.find(|l| l.trim() == begin)?;
        let mut body = Vec::new();
        for l in lines {
            if let Some(rest) = l.trim().strip_prefix(&end) {
                return Some((body, rest.trim()));
            }
            body.push(l);
        }
        None
    }
}

/// Where fixtures are cached.
pub fn fixture_dir() -> PathBuf {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    host.parent()
        .unwrap_or(host)
        .join("target/introspect-fixtures")
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

/// The newest `/boot/vmlinuz-*` and its release.
pub fn kernel() -> Result<(PathBuf, String), String> {
    let mut ks: Vec<PathBuf> = std::fs::read_dir("/boot")
        .map_err(|e| format!("/boot: {e}; {INSTALL_HINT}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    ks.sort();
    let k = ks
        .pop()
        .ok_or_else(|| format!("no /boot/vmlinuz-*: {INSTALL_HINT}"))?;
    let name = k.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let ver = name.trim_start_matches("vmlinuz-").to_string();
    Ok((k, ver))
}

/// Appends one newc cpio entry.
fn cpio_entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
    let ino = out.len() as u32;
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

const BB: &str = "/bin/busybox";

/// A module of the kernel's modules directory, decompressed if Debian ships it compressed
/// (6.12 does, `.ko.xz`); `None` if the kernel has no such module file.
fn kernel_module(modules: &Path, name: &str) -> Result<Option<Vec<u8>>, String> {
    let base = modules.join(format!("kernel/lib/{name}.ko"));
    if let Ok(data) = std::fs::read(&base) {
        return Ok(Some(data));
    }
    for (ext, tool) in [("xz", "xz"), ("zst", "zstd")] {
        let packed = base.with_extension(format!("ko.{ext}"));
        if !packed.is_file() {
            continue;
        }
        let out = Command::new(tool)
            .arg("-dc")
            .arg(&packed)
            .output()
            .map_err(|e| format!("{tool} -dc {}: {e}; {INSTALL_HINT}", packed.display()))?;
        if !out.status.success() {
            return Err(format!("{tool} -dc {} failed", packed.display()));
        }
        return Ok(Some(out.stdout));
    }
    Ok(None)
}

/// The script the guest runs (after mounting): what it loads, prints and keeps running.
fn stage2(loads: &str) -> String {
    let kallsyms = KALLSYMS.join("|");
    format!(
        "{BB} mount -t devtmpfs dev /dev\n{BB} mount -t proc proc /proc\n\
         {BB} mount -t sysfs sysfs /sys\n{BB} mount -t debugfs debugfs /sys/kernel/debug\n\
         echo 0 > /proc/sys/kernel/kptr_restrict\n\
         {loads}\
         {BB} sleep 100000 &\n\
         echo VMARK-PS-BEGIN\n{BB} ps -o pid,ppid,comm &\nPS=$!\nwait $PS\necho VMARK-PS-END ps=$PS\n\
         echo VMARK-MODULES-BEGIN\n{BB} cat /proc/modules\necho VMARK-MODULES-END\n\
         echo VMARK-VALUES-BEGIN\n\
         [ -e /sys/kernel/debug/vmark_demo/values ] && {BB} cat /sys/kernel/debug/vmark_demo/values\n\
         echo VMARK-VALUES-END\n\
         echo VMARK-UNAME-BEGIN\n{BB} uname -a\necho VMARK-UNAME-END\n\
         echo VMARK-LA57-BEGIN\n{BB} grep -o -m 1 -w la57 /proc/cpuinfo\necho VMARK-LA57-END\n\
         echo VMARK-KALLSYMS-BEGIN\n\
         {BB} grep -E ' ({kallsyms})$' /proc/kallsyms\n\
         {BB} grep -E '\\]$' /proc/kallsyms\n\
         echo VMARK-KALLSYMS-END\n\
         echo VMARK-IOMEM-BEGIN\n{BB} grep ' : Kernel ' /proc/iomem\necho VMARK-IOMEM-END\n\
         echo VMARK-READY\nexec {BB} sleep 1000000\n"
    )
}

fn initramfs(kernel: &Kernel, extra: &[PathBuf]) -> Result<Vec<u8>, String> {
    let busybox = match &kernel.busybox {
        Some(b) => b.clone(),
        None => ["/bin/busybox", "/usr/bin/busybox"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| format!("busybox (busybox-static) missing: {INSTALL_HINT}"))?,
    };
    let mut c = Vec::new();
    for d in ["bin", "dev", "proc", "sys", "tmp"] {
        cpio_entry(&mut c, d, 0o040755, &[]);
    }
    let bb = std::fs::read(&busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    cpio_entry(&mut c, "bin/busybox", 0o100755, &bb);
    let mut loads = String::new();
    let mut load = |c: &mut Vec<u8>, name: &str, data: &[u8]| {
        cpio_entry(c, name, 0o100644, data);
        loads.push_str(&format!("{BB} insmod /{name}\n"));
    };
    for m in MODULES {
        if let Some(data) = kernel_module(&kernel.modules, m)? {
            load(&mut c, &format!("{m}.ko"), &data);
        }
    }
    for (i, m) in extra.iter().enumerate() {
        let data = std::fs::read(m).map_err(|e| format!("{}: {e}", m.display()))?;
        load(&mut c, &format!("extra{i}.ko"), &data);
    }
    let stage2 = stage2(&loads);
    cpio_entry(&mut c, "stage2", 0o100644, stage2.as_bytes());
    // PID 1 becomes busybox at once, so its name is the same in the listing and the dump.
    let init = format!("#!{BB} sh\nexec {BB} sh /stage2\n");
    cpio_entry(&mut c, "init", 0o100755, init.as_bytes());
    cpio_entry(&mut c, "TRAILER!!!", 0, &[]);
    Ok(c)
}

fn qmp(sock: &Path, dump: &Path) -> Result<(), String> {
    let s = UnixStream::connect(sock).map_err(|e| format!("QMP connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let cmds = [
        r#"{"execute":"qmp_capabilities"}"#.to_string(),
        r#"{"execute":"stop"}"#.to_string(),
        format!(
            r#"{{"execute":"dump-guest-memory","arguments":{{"paging":false,"protocol":"file:{}"}}}}"#,
            dump.display()
        ),
    ];
    for cmd in cmds {
        writeln!(w, "{cmd}").map_err(|e| e.to_string())?;
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("QMP closed".into());
            }
            if line.contains("\"error\"") {
                return Err(line.clone());
            }
            if line.contains("\"return\"") {
                break;
            }
        }
    }
    writeln!(w, r#"{{"execute":"quit"}}"#).ok();
    Ok(())
}

fn build(
    dir: &Path,
    stem: &str,
    kernel: &Kernel,
    machine: Machine,
    initrd_data: Vec<u8>,
) -> Result<Fixture, String> {
    let qemu = which(machine.qemu())
        .ok_or_else(|| format!("{} not found: {INSTALL_HINT}", machine.qemu()))?;
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let work = dir.join(format!("work-{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| io(&work, e))?;
    let initrd = work.join("initrd.cpio");
    std::fs::write(&initrd, initrd_data).map_err(|e| io(&initrd, e))?;
    let serial = work.join("serial.log");
    let sock = work.join("qmp.sock");
    let dump = work.join("dump.elf");
    let ram = work.join("ram.bin");
    let mut cmd = Command::new(qemu);
    cmd.args(["-accel", "tcg", "-m", "256", "-display", "none"]);
    if let Some(cpu) = machine.cpu() {
        cmd.args(["-cpu", cpu]);
    }
    if machine.vmcoreinfo {
        cmd.args(["-device", "vmcoreinfo"]);
    }
    let mut child = cmd
        .arg("-object")
        .arg(format!(
            "memory-backend-file,id=ram,size=256M,mem-path={},share=on",
            ram.display()
        ))
        .args(["-machine", "pc,memory-backend=ram"])
        .args(["-no-reboot", "-monitor", "none"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting QEMU: {e}; {INSTALL_HINT}"))?;
    let t0 = Instant::now();
    let ready = loop {
        if std::fs::read_to_string(&serial).is_ok_and(|s| s.contains("VMARK-READY")) {
            break true;
        }
        if t0.elapsed() > BOOT_TIMEOUT || child.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Let the final exec happen.
    std::thread::sleep(Duration::from_millis(500));
    let res = if ready {
        qmp(&sock, &dump)
    } else {
        Err(format!(
            "guest ({}, {machine:?}) did not boot within {BOOT_TIMEOUT:?}",
            kernel.image.display()
        ))
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&serial)
        .unwrap_or_default()
        .replace('\r', "");
    if let Err(e) = res {
        return Err(format!(
            "building the QEMU dump fixture failed: {e}\nserial log tail: {}",
            log.chars()
                .skip(log.chars().count().saturating_sub(2000))
                .collect::<String>()
        ));
    }
    let final_dump = dir.join(format!("{stem}.elf"));
    let final_ram = dir.join(format!("{stem}.ram"));
    let final_serial = dir.join(format!("{stem}.serial"));
    std::fs::rename(&ram, &final_ram).map_err(|e| io(&final_ram, e))?;
    std::fs::rename(&dump, &final_dump).map_err(|e| io(&final_dump, e))?;
    // Written last: its presence says the fixture is complete (see build_for).
    std::fs::write(&final_serial, &log).map_err(|e| io(&final_serial, e))?;
    let _ = std::fs::remove_dir_all(&work);
    prune(dir, &format!("{}{}-", kernel.release, machine.tag()));
    Ok(Fixture {
        dump: final_dump,
        ram: final_ram,
        serial: log,
        release: kernel.release.clone(),
        serial_path: final_serial,
    })
}

/// Cached fixtures kept per kernel release and machine: the plain one, the marks-demo
/// one, and a few older builds that tests running right now may still be reading.
const KEEP_PER_KERNEL: usize = 4;

/// Deletes all but the [`KEEP_PER_KERNEL`] newest fixtures named `PREFIX<16 hex>`: each
/// is half a gigabyte, and every change to a module's bytes makes a new one.
fn prune(dir: &Path, prefix: &str) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut found: Vec<(std::time::SystemTime, String)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".serial")?;
            let hash = stem.strip_prefix(prefix)?;
            let ours = hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit());
            let when = e.metadata().and_then(|m| m.modified()).ok()?;
            ours.then(|| (when, stem.to_string()))
        })
        .collect();
    found.sort();
    let old = found.len().saturating_sub(KEEP_PER_KERNEL);
    for (_, stem) in &found[..old] {
        // The .serial goes first: without it the fixture counts as absent (see build_for).
        for ext in ["serial", "elf", "ram"] {
            let _ = std::fs::remove_file(dir.join(format!("{stem}.{ext}")));
        }
    }
}

/// FNV-1a over byte strings: names a cached fixture by what went into it.
fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(&[0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The fixture of `kernel` on `machine` whose guest also loads `extra` modules (in order),
/// built on first use and cached by the kernel's release, the machine and the initramfs
/// (init script, busybox and every module's bytes): a second call costs nothing.
pub fn build_for(kernel: &Kernel, machine: Machine, extra: &[PathBuf]) -> Result<Fixture, String> {
    let dir = fixture_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let initrd = initramfs(kernel, extra)?;
    let image = kernel.image.to_string_lossy();
    let tag = fnv1a([initrd.as_slice(), image.as_bytes()]);
    let stem = format!("{}{}-{tag}", kernel.release, machine.tag());
    let dump = dir.join(format!("{stem}.elf"));
    let ram = dir.join(format!("{stem}.ram"));
    let serial_path = dir.join(format!("{stem}.serial"));
    if let (true, true, Ok(serial)) = (
        dump.is_file(),
        ram.is_file(),
        std::fs::read_to_string(&serial_path),
    ) {
        return Ok(Fixture {
            dump,
            ram,
            serial,
            release: kernel.release.clone(),
            serial_path,
        });
    }
    build(&dir, &stem, kernel, machine, initrd)
}

/// The host kernel's fixture whose guest also loads `extra` modules (in order), built on
/// first use and cached (see [`build_for`]).
pub fn build_with(extra: &[PathBuf]) -> Result<Fixture, String> {
    build_for(&Kernel::host()?, Machine::default(), extra)
}

/// The plain fixture (no extra modules), built on first use. Panics with the reason when
/// it cannot be built: for tests.
pub fn plain() -> &'static Fixture {
    static F: OnceLock<Result<Fixture, String>> = OnceLock::new();
    match F.get_or_init(|| build_with(&[])) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    }
}

/// Path of the plain fixture's dump (see [`plain`]).
pub fn dump() -> &'static Path {
    &plain().dump
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest_fixtures_of_one_kernel_only() {
        let dir = std::env::temp_dir().join(format!("vmark-prune-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stems: Vec<String> = (0..6)
            .map(|i| format!("6.1.0-1-amd64-{i:016x}"))
            .chain(["6.1.0-1-amd64-la57-0000000000000000".to_string()])
            .collect();
        for (i, stem) in stems.iter().enumerate() {
            for ext in ["elf", "ram", "serial"] {
                let f = std::fs::File::create(dir.join(format!("{stem}.{ext}"))).unwrap();
                let when = std::time::UNIX_EPOCH + Duration::from_secs(1000 + i as u64);
                f.set_modified(when).unwrap();
            }
        }
        prune(&dir, "6.1.0-1-amd64-");
        let left = |stem: &str| dir.join(format!("{stem}.serial")).is_file();
        assert!(!left(&stems[0]) && !left(&stems[1]), "oldest two pruned");
        assert!(!dir.join(format!("{}.elf", stems[0])).exists());
        assert!(stems[2..6].iter().all(|s| left(s)), "newest four kept");
        assert!(
            left(&stems[6]),
            "another machine's fixture is not this kernel's"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn machine_tags_name_the_cache_files() {
        assert_eq!(Machine::default().tag(), "");
        let m = Machine {
            arch: Arch::I386,
            la57: false,
            vmcoreinfo: false,
        };
        assert_eq!(
            (m.tag().as_str(), m.qemu(), m.cpu()),
            ("-i386", "qemu-system-i386", None)
        );
        let m = Machine {
            arch: Arch::X86_64,
            la57: true,
            vmcoreinfo: false,
        };
        assert_eq!(m.cpu(), Some("qemu64,+la57"));
    }
}
