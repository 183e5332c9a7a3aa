//! Mark discovery, manifest assembly and embedding on tiny relocatable objects compiled
//! with gcc in the test (user-space C with records laid out as `vmark.h` lays them out, so
//! no kernel headers are needed). gcc missing is a failure naming `tests/install-deps.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use vmark_build::{
    build_manifest, embed, extract, find_marks, BuildError, BuildOptions, MarkError, VarLocation,
};
use vmark_proto::MarkFlags;

const SOURCE: &str = r#"
#include "vmark_abi.h"

struct pt {
	int x;
	unsigned int f:3;
	unsigned int g:5;
	union { long raw; struct { int lo, hi; }; };
};

static struct pt point = { .x = 1, .f = 2 };
unsigned long counter;
extern int ext_var;
extern int ext_var2;

#define REC(var, mark_name)						\
	struct vmark_record __vmark_rec_##var				\
	__attribute__((used, section(".vmark.records"), aligned(64))) = { \
		.magic = VMARK_RECORD_MAGIC,				\
		.abi_version = VMARK_ABI_VERSION,			\
		.addr = (unsigned long)&(var),				\
		.size = sizeof(var),					\
		.name = (unsigned long)(mark_name),			\
	}

REC(point, "pt");
REC(counter, "counter");
EXTRA

#define USE(what, var)							\
	asm(".pushsection .note.vmark.uses,\"\",@note\n\t"		\
	    ".balign 4\n\t.long 6, 2f - 1f, 1\n\t.asciz \"vmark\"\n\t"	\
	    ".balign 4\n1:\t.asciz \"" what " " #var "\"\n2:\t.balign 4\n\t" \
	    ".popsection")

void bump(void)
{
	USE("seq", counter);
	USE("trigger", counter);
	counter++;
	point.x++;
}
"#;

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("vmark-build-objects")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles SOURCE (with `extra` in place of EXTRA) and returns the object's bytes.
fn compile(name: &str, extra: &str, debug: bool) -> (PathBuf, Vec<u8>) {
    compile_with(name, extra, debug, &[])
}

/// Compiles SOURCE as a 32-bit (i386) object, as a 32-bit kernel's modules are: ELF32,
/// `R_386_32` REL relocations, 4-byte DWARF addresses. Freestanding, so gcc needs no
/// 32-bit C library, and without PIC, as Kbuild compiles.
fn compile_i386(name: &str, extra: &str) -> (PathBuf, Vec<u8>) {
    compile_with(name, extra, true, &["-m32", "-ffreestanding", "-fno-pic"])
}

fn compile_with(name: &str, extra: &str, debug: bool, flags: &[&str]) -> (PathBuf, Vec<u8>) {
    let dir = work_dir(name);
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, SOURCE.replace("EXTRA", extra)).unwrap();
    let obj = dir.join(format!("{name}.o"));
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared-proto/include");
    let mut cmd = Command::new("gcc");
    cmd.args(["-O1", "-c", "-Wall", "-Werror"])
        .args(flags)
        .arg("-I")
        .arg(&include)
        .arg("-o")
        .arg(&obj)
        .arg(&src);
    if debug {
        cmd.arg("-g");
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("running gcc: {e}; run `sudo tests/install-deps.sh` (installs build-essential)")
    });
    assert!(
        out.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = std::fs::read(&obj).unwrap();
    (obj, data)
}

#[test]
fn marks_are_found_with_names_symbols_sizes_and_flags() {
    let (_, data) = compile("basic", "", true);
    let marks = find_marks(&data).unwrap();
    assert_eq!(marks.len(), 2);
    // Record order is section order (gcc emits the later definition first).
    let pt = marks.iter().find(|m| m.name == "pt").unwrap();
    assert_eq!((pt.name.as_str(), pt.var.as_str()), ("pt", "point"));
    assert_eq!(pt.symbol, "point");
    assert_eq!(pt.size, 16);
    assert_eq!(pt.flags, MarkFlags(0));
    assert!(matches!(pt.location, VarLocation::Defined { .. }));
    let c = marks.iter().find(|m| m.name == "counter").unwrap();
    assert_eq!(
        (c.name.as_str(), c.symbol.as_str(), c.size),
        ("counter", "counter", 8)
    );
    assert_eq!(c.flags, MarkFlags(MarkFlags::SEQ | MarkFlags::TRIGGER));
}

#[test]
fn manifest_is_built_embedded_and_extracted() {
    let (obj, data) = compile("embed", "", true);
    let opts = BuildOptions {
        fallback_module_name: Some("embed".into()),
        ..Default::default()
    };
    let m = build_manifest(&data, &opts).unwrap();
    assert_eq!(m.module, "embed");
    assert_eq!(m.kernel_release, "");
    assert_eq!(m.build_id.len(), 8, "FNV-1a-64 without a build-id note");
    assert_eq!(m.types.type_name(m.mark("pt").unwrap().ty), "struct pt");
    assert_eq!(
        m.types.type_name(m.mark("counter").unwrap().ty),
        "long unsigned int"
    );

    let blob = vmark_proto::encode(&m).unwrap();
    let out = embed(&data, &blob).unwrap();
    assert_eq!(extract(&out).unwrap().unwrap(), m);
    assert_eq!(extract(&data).unwrap(), None);
    // The build id ignores the manifest, so the embedded object rebuilds the same one.
    assert_eq!(build_manifest(&out, &opts).unwrap(), m);
    // Embedding again replaces rather than adds, and reaches a fixed point.
    let again = embed(&out, &blob).unwrap();
    assert_eq!(again, out);

    // The result is still a valid object for binutils.
    let embedded = obj.with_extension("embedded.o");
    std::fs::write(&embedded, &out).unwrap();
    let readelf = Command::new("readelf").arg("-SsW").arg(&embedded).output();
    if let Ok(r) = readelf {
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(r.status.success() && r.stderr.is_empty(), "readelf: {text}");
        assert!(text.contains(".vmark.manifest"), "{text}");
        assert!(text.contains("__vmark_manifest"), "{text}");
    }
}

#[test]
fn missing_debug_info_names_the_fix() {
    let (_, data) = compile("nodebug", "", false);
    let err = build_manifest(&data, &BuildOptions::default()).unwrap_err();
    assert!(matches!(err, BuildError::NoDebugInfo), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("CONFIG_DEBUG_INFO") && msg.contains("-g"),
        "{msg}"
    );
}

#[test]
fn no_marks_is_an_error() {
    let (_, data) = compile("nomarks", "", true);
    let mut file_without = data.clone();
    // Rename the record section so no record is found.
    let pos = file_without
        .windows(14)
        .position(|w| w == b".vmark.records")
        .unwrap();
    file_without[pos + 1] = b'x';
    assert!(matches!(
        build_manifest(&file_without, &BuildOptions::default()),
        Err(BuildError::NoMarks)
    ));
}

#[test]
fn external_variables_are_located_by_name() {
    let (_, data) = compile("extern", "REC(ext_var, \"ext\");", true);
    let marks = find_marks(&data).unwrap();
    let ext = marks.iter().find(|m| m.name == "ext").unwrap();
    assert_eq!(
        ext.location,
        VarLocation::External {
            symbol: "ext_var".into()
        }
    );
    assert_eq!(ext.symbol, "ext_var");
}

#[test]
fn duplicate_names_are_an_error() {
    let (_, data) = compile("dup", "REC(ext_var2, \"pt\");", true);
    assert!(matches!(find_marks(&data), Err(MarkError::DuplicateName(n)) if n == "pt"));
}

#[test]
fn malformed_objects_are_errors_not_panics() {
    use vmark_build::object::read::{Object, ObjectSection};
    let (_, data) = compile("malformed", "", true);
    // A bad magic in the first record.
    let file = vmark_build::object::File::parse(&*data).unwrap();
    let (off, _) = file
        .section_by_name(".vmark.records")
        .unwrap()
        .file_range()
        .unwrap();
    let mut bad = data.clone();
    bad[off as usize] ^= 0xff;
    assert!(matches!(find_marks(&bad), Err(MarkError::BadRecord { .. })));
    // Truncated and corrupted files.
    let step = (data.len() / 200).max(1);
    for n in (0..data.len()).step_by(step) {
        let _ = find_marks(&data[..n]);
        let _ = build_manifest(&data[..n], &BuildOptions::default());
        let _ = extract(&data[..n]);
        let mut junk = data.clone();
        junk[n] ^= 0x5a;
        let _ = find_marks(&junk);
        let _ = build_manifest(&junk, &BuildOptions::default());
    }
}

/// The marks of `SOURCE` plus a pointer and an external variable.
const I386_EXTRA: &str =
    "static struct pt *ptp = &point; REC(ptp, \"ptp\"); REC(ext_var, \"ext\");";

#[test]
fn i386_objects_have_marks_with_4_byte_addresses() {
    let (obj, data) = compile_i386("i386", I386_EXTRA);
    assert_eq!(&data[4..6], &[1, 1], "ELFCLASS32, little-endian");
    let marks = find_marks(&data).unwrap();
    let by_name = |n: &str| marks.iter().find(|m| m.name == n).unwrap();
    assert_eq!(
        by_name("counter").size,
        4,
        "unsigned long is 4 bytes on i386"
    );
    assert_eq!(
        by_name("counter").flags,
        MarkFlags(MarkFlags::SEQ | MarkFlags::TRIGGER)
    );
    assert_eq!(
        (by_name("pt").symbol.as_str(), by_name("pt").size),
        ("point", 16)
    );
    assert!(matches!(
        by_name("pt").location,
        VarLocation::Defined { .. }
    ));
    assert_eq!(by_name("ptp").size, 4);
    assert_eq!(
        by_name("ext").location,
        VarLocation::External {
            symbol: "ext_var".into()
        }
    );

    let opts = BuildOptions {
        fallback_module_name: Some("i386".into()),
        ..Default::default()
    };
    let m = build_manifest(&data, &opts).unwrap();
    let size = |mark: &str| m.types.size_of(m.mark(mark).unwrap().ty);
    assert_eq!(size("counter"), Some(4));
    assert_eq!(size("ptp"), Some(4), "pointers are 4 bytes");
    assert_eq!(m.types.type_name(m.mark("ptp").unwrap().ty), "struct pt *");
    assert_eq!(size("pt"), Some(16));
    // The manifest embeds into the ELF32 object and reads back unchanged.
    let blob = vmark_proto::encode(&m).unwrap();
    let out = embed(&data, &blob).unwrap();
    assert_eq!(extract(&out).unwrap().unwrap(), m);
    assert_eq!(build_manifest(&out, &opts).unwrap(), m);
    let embedded = obj.with_extension("embedded.o");
    std::fs::write(&embedded, &out).unwrap();
    let r = Command::new("readelf")
        .arg("-hSW")
        .arg(&embedded)
        .output()
        .expect("readelf (binutils) runs");
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success() && r.stderr.is_empty(), "readelf: {text}");
    assert!(
        text.contains("ELF32") && text.contains(".vmark.manifest"),
        "{text}"
    );
}

#[test]
fn i386_record_with_a_nonzero_high_half_is_refused() {
    use vmark_build::object::read::{Object, ObjectSection};
    let (_, data) = compile_i386("i386-high", "");
    let file = vmark_build::object::File::parse(&*data).unwrap();
    let (off, _) = file
        .section_by_name(".vmark.records")
        .unwrap()
        .file_range()
        .unwrap();
    // The high half of the first record's `addr` slot (bytes 12..16).
    let mut bad = data.clone();
    bad[off as usize + 12] = 1;
    let err = find_marks(&bad).unwrap_err();
    assert!(
        matches!(&err, MarkError::BadRelocation { field: "addr", .. })
            && err.to_string().contains("high half"),
        "{err}"
    );
}
