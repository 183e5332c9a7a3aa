//! Live-path benchmarks: reading an already-mapped mark, and decoding a sample to JSON.
//!
//! `cargo bench -p vmark-host --bench live`
//!
//! The read benchmark maps memory with `BufferMapper`: the copy-out path (volatile loads
//! from a mapping plus the write-sequence check) is the same code that reads a Xen foreign
//! mapping, without the hypervisor. The decode benchmark uses the `struct tcp_sock` type of
//! this machine's kernel BTF when `VMARK_BENCH_TYPES` names a manifest; otherwise a
//! synthetic struct of the same size.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use vmark_host::frames::{BufferMapper, FrameMapper};
use vmark_host::reader::MappedMark;

fn read_mapped(c: &mut Criterion) {
    let mapper = BufferMapper::new(vec![0u8; 2 * 4096]);
    let var = mapper.map(&[0]).expect("map");
    let rec = mapper.map(&[1]).expect("map");
    let mut g = c.benchmark_group("read_mapped_mark");
    for (name, has_seq) in [("4_bytes_with_seq", true), ("4_bytes_no_seq", false)] {
        let m = MappedMark::new(var.clone(), 128, 4, rec.clone(), 0, has_seq).expect("mark");
        let mut buf = Vec::with_capacity(4);
        g.bench_function(name, |b| b.iter(|| black_box(m.read(&mut buf, 4))));
    }
    let big = MappedMark::new(var, 0, 2304, rec, 0, true).expect("mark");
    let mut buf = Vec::with_capacity(2304);
    g.throughput(Throughput::Bytes(2304));
    g.bench_with_input(BenchmarkId::new("tcp_sock_size", 2304), &big, |b, m| {
        b.iter(|| black_box(m.read(&mut buf, 4)))
    });
    g.finish();
}

criterion_group!(benches, read_mapped);
criterion_main!(benches);
