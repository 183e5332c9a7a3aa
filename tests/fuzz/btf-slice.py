#!/usr/bin/env python3
"""Cuts a small, valid BTF blob out of a kernel's BTF, for the `btf` fuzz seed corpus.

    btf-slice.py INPUT OUTPUT [N]

INPUT is a raw `.BTF` blob or a (compressed) kernel image: a bzImage is unpacked (xz,
zstd or gzip payload) and its `.BTF` section taken with objcopy. The slice keeps the first
N types (default 400) with their kinds and layouts, references to types beyond the slice
become `void` (id 0), and the string section keeps only the names used, so the seed is a
few tens of KiB instead of megabytes while still holding real kernel structs.
"""

import gzip
import lzma
import os
import struct
import subprocess
import sys
import tempfile

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
REF_IN_HEADER = {PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DECL_TAG, TYPE_TAG}


def vmlinux_btf(path):
    data = open(path, "rb").read()
    if data[:2] == b"\x9f\xeb":
        return data
    if data[:4] != b"\x7fELF":
        for magic, unpack in (
            (b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(b)),
            (b"\x28\xb5\x2f\xfd", lambda b: subprocess.run(["zstd", "-dc"], input=b, capture_output=True).stdout),
            (b"\x1f\x8b\x08\x00", lambda b: gzip.GzipFile(fileobj=__import__("io").BytesIO(b)).read()),
        ):
            at = data.find(magic)
            if at >= 0:
                try:
                    data = unpack(data[at:])
                except Exception:
                    continue
                if data[:4] == b"\x7fELF":
                    break
        else:
            sys.exit(f"{path}: no compressed ELF kernel found")
    with tempfile.TemporaryDirectory() as tmp:
        elf, out = os.path.join(tmp, "vmlinux"), os.path.join(tmp, "btf")
        open(elf, "wb").write(data)
        subprocess.run(["objcopy", "-O", "binary", "--only-section=.BTF", elf, out], check=True)
        return open(out, "rb").read()


def main():
    src, dst = sys.argv[1], sys.argv[2]
    keep = int(sys.argv[3]) if len(sys.argv) > 3 else 400
    btf = vmlinux_btf(src)
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", btf, 4)
    types = btf[hdr_len + type_off : hdr_len + type_off + type_len]
    strs = btf[hdr_len + str_off : hdr_len + str_off + str_len]
    new_strs = bytearray(b"\0")
    str_map = {0: 0}

    def name(off):
        if off not in str_map:
            end = strs.index(b"\0", off)
            str_map[off] = len(new_strs)
            new_strs.extend(strs[off : end + 1])
        return str_map[off]

    def ref(t):
        return t if t <= keep else 0

    out = bytearray()
    at = 0
    for _ in range(keep):
        if at >= len(types):
            break
        name_off, info, size_or_type = struct.unpack_from("<3I", types, at)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        extra = {INT: 4, VAR: 4, DECL_TAG: 4, ARRAY: 12, STRUCT: 12 * vlen, UNION: 12 * vlen,
                 DATASEC: 12 * vlen, ENUM64: 12 * vlen, ENUM: 8 * vlen, FUNC_PROTO: 8 * vlen}.get(kind, 0)
        body = bytearray(types[at + 12 : at + 12 + extra])
        if kind in REF_IN_HEADER:
            size_or_type = ref(size_or_type)
        if kind == ARRAY:
            e, i, n = struct.unpack_from("<3I", body)
            struct.pack_into("<3I", body, 0, ref(e), ref(i), n)
        elif kind in (STRUCT, UNION):
            for m in range(vlen):
                mn, mt, mo = struct.unpack_from("<3I", body, 12 * m)
                struct.pack_into("<3I", body, 12 * m, name(mn), ref(mt), mo)
        elif kind in (ENUM, ENUM64):
            step = 8 if kind == ENUM else 12
            for m in range(vlen):
                (en,) = struct.unpack_from("<I", body, step * m)
                struct.pack_into("<I", body, step * m, name(en))
        elif kind == FUNC_PROTO:
            for m in range(vlen):
                pn, pt = struct.unpack_from("<2I", body, 8 * m)
                struct.pack_into("<2I", body, 8 * m, name(pn), ref(pt))
        elif kind == DATASEC:
            for m in range(vlen):
                (vt,) = struct.unpack_from("<I", body, 12 * m)
                struct.pack_into("<I", body, 12 * m, ref(vt))
        out += struct.pack("<3I", name(name_off), info, size_or_type) + body
        at += 12 + extra
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(out), len(out), len(new_strs))
    open(dst, "wb").write(header + bytes(out) + bytes(new_strs))
    print(f"{dst}: {keep} types, {len(header) + len(out) + len(new_strs)} bytes")


if __name__ == "__main__":
    main()
