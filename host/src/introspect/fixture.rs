//! A real introspection fixture: the host's Debian kernel booted under QEMU (TCG) with a
//! busybox initramfs, dumped with QMP `dump-guest-memory` (a QEMU ELF core); the guest's
//! RAM is a shared memory-backend file, kept too (a live QEMU guest's RAM, `qemu-shm`).
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
//! - `VALUES`: `/sys/kernel/debug/vmark_demo/values` when `examples/marks-demo` is loaded.
//!
//! PID 1 is `busybox` throughout (the init script execs busybox's shell before anything
//! else), so the process list does not change names between the listing and the dump.
//!
//! Built once per set of extra modules and cached under `target/introspect-fixtures/`
//! (`<release>[-<tag>].elf` and `.serial`), about 10–30 s to build. Missing prerequisites
//! are errors naming `tests/install-deps.sh`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The modules the guest loads from the host's `/lib/modules` (uncompressed).
pub const MODULES: [&str; 2] = ["crc7", "crc8"];

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
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/introspect-fixtures")
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

fn initramfs(kver: &str, extra: &[PathBuf]) -> Result<Vec<u8>, String> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .find(|p| Path::new(p).is_file())
        .ok_or_else(|| format!("busybox (busybox-static) missing: {INSTALL_HINT}"))?;
    let mut c = Vec::new();
    for d in ["bin", "dev", "proc", "sys", "tmp"] {
        cpio_entry(&mut c, d, 0o040755, &[]);
    }
    let bb = std::fs::read(busybox).map_err(|e| format!("{busybox}: {e}"))?;
    cpio_entry(&mut c, "bin/busybox", 0o100755, &bb);
    let mut stage2 = format!(
        "{BB} mount -t devtmpfs dev /dev\n{BB} mount -t proc proc /proc\n\
         {BB} mount -t sysfs sysfs /sys\n{BB} mount -t debugfs debugfs /sys/kernel/debug\n"
    );
    let mut load = |c: &mut Vec<u8>, name: &str, data: &[u8]| {
        cpio_entry(c, name, 0o100644, data);
        stage2.push_str(&format!("{BB} insmod /{name}\n"));
    };
    for m in MODULES {
        let p = format!("/lib/modules/{kver}/kernel/lib/{m}.ko");
        if let Ok(data) = std::fs::read(&p) {
            load(&mut c, &format!("{m}.ko"), &data);
        }
    }
    for (i, m) in extra.iter().enumerate() {
        let data = std::fs::read(m).map_err(|e| format!("{}: {e}", m.display()))?;
        load(&mut c, &format!("extra{i}.ko"), &data);
    }
    stage2.push_str(&format!(
        "{BB} sleep 100000 &\n\
         echo VMARK-PS-BEGIN\n{BB} ps -o pid,ppid,comm &\nPS=$!\nwait $PS\necho VMARK-PS-END ps=$PS\n\
         echo VMARK-MODULES-BEGIN\n{BB} cat /proc/modules\necho VMARK-MODULES-END\n\
         echo VMARK-VALUES-BEGIN\n\
         [ -e /sys/kernel/debug/vmark_demo/values ] && {BB} cat /sys/kernel/debug/vmark_demo/values\n\
         echo VMARK-VALUES-END\n\
         echo VMARK-READY\nexec {BB} sleep 1000000\n"
    ));
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
    kver: &str,
    kernel: &Path,
    extra: &[PathBuf],
) -> Result<Fixture, String> {
    let qemu = which("qemu-system-x86_64")
        .ok_or_else(|| format!("qemu-system-x86_64 not found: {INSTALL_HINT}"))?;
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let work = dir.join(format!("work-{stem}-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| io(&work, e))?;
    let initrd = work.join("initrd.cpio");
    std::fs::write(&initrd, initramfs(kver, extra)?).map_err(|e| io(&initrd, e))?;
    let serial = work.join("serial.log");
    let sock = work.join("qmp.sock");
    let dump = work.join("dump.elf");
    let ram = work.join("ram.bin");
    let mut child = Command::new(qemu)
        .args(["-accel", "tcg", "-m", "256", "-display", "none"])
        .arg("-object")
        .arg(format!(
            "memory-backend-file,id=ram,size=256M,mem-path={},share=on",
            ram.display()
        ))
        .args(["-machine", "pc,memory-backend=ram"])
        .args(["-no-reboot", "-monitor", "none"])
        .arg("-kernel")
        .arg(kernel)
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
        if t0.elapsed() > Duration::from_secs(180) || child.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Let the final exec happen.
    std::thread::sleep(Duration::from_millis(500));
    let res = if ready {
        qmp(&sock, &dump)
    } else {
        Err("guest did not boot".into())
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
    // Written last: its presence says the fixture is complete (see build_with).
    std::fs::write(&final_serial, &log).map_err(|e| io(&final_serial, e))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(Fixture {
        dump: final_dump,
        ram: final_ram,
        serial: log,
    })
}

/// FNV-1a of the extra modules' bytes: names the cached fixture of that set.
fn tag(extra: &[PathBuf]) -> Result<String, String> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for m in extra {
        for b in std::fs::read(m).map_err(|e| format!("{}: {e}", m.display()))? {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("{h:016x}"))
}

/// The fixture whose guest also loads `extra` modules (in order), built on first use and
/// cached by the modules' contents.
pub fn build_with(extra: &[PathBuf]) -> Result<Fixture, String> {
    let (kernel, kver) = kernel()?;
    let dir = fixture_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let stem = if extra.is_empty() {
        kver.clone()
    } else {
        format!("{kver}-{}", tag(extra)?)
    };
    let dump = dir.join(format!("{stem}.elf"));
    let ram = dir.join(format!("{stem}.ram"));
    if let (true, true, Ok(serial)) = (
        dump.is_file(),
        ram.is_file(),
        std::fs::read_to_string(dir.join(format!("{stem}.serial"))),
    ) {
        return Ok(Fixture { dump, ram, serial });
    }
    build(&dir, &stem, &kver, &kernel, extra)
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
