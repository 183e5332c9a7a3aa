//! `vmark-build`: builds a kernel module's vmark manifest and embeds it in the `.ko`.
//!
//! ```text
//! vmark-build embed [--pointer-depth N] [--out OUT.ko] FILE.ko...   (in place by default)
//! vmark-build manifest FILE.ko [--pointer-depth N] [--json]          (build, print, no write)
//! vmark-build extract FILE.ko [--json]                               (print the embedded one)
//! ```

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use vmark_build::{BuildOptions, DEFAULT_POINTER_DEPTH};
use vmark_proto::Manifest;

#[derive(Parser)]
#[command(
    name = "vmark-build",
    version,
    about = "Builds and embeds vmark manifests in kernel modules"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build each module's manifest and embed it (in place unless --out is given).
    Embed {
        /// Pointer levels the type closure follows from each mark.
        #[arg(long, default_value_t = DEFAULT_POINTER_DEPTH)]
        pointer_depth: u32,
        /// Write the result here instead of rewriting FILE (only with a single FILE).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Print nothing on success.
        #[arg(long, short)]
        quiet: bool,
        /// Modules (.ko) or objects (.o).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Build a module's manifest and print it without embedding it.
    Manifest {
        /// The module (.ko) or object (.o).
        file: PathBuf,
        /// Pointer levels the type closure follows from each mark.
        #[arg(long, default_value_t = DEFAULT_POINTER_DEPTH)]
        pointer_depth: u32,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the manifest embedded in a module.
    Extract {
        /// The module (.ko).
        file: PathBuf,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmark-build: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Embed {
            pointer_depth,
            out,
            quiet,
            files,
        } => {
            if out.is_some() && files.len() != 1 {
                return Err("--out takes exactly one input file".into());
            }
            let opts = BuildOptions {
                pointer_depth,
                ..BuildOptions::default()
            };
            for file in &files {
                let target = out.clone().unwrap_or_else(|| file.clone());
                let outcome = vmark_build::embed_file(file, &target, &opts)?;
                if !quiet {
                    println!(
                        "{}: {} marks, {} types, manifest {} bytes{}",
                        target.display(),
                        outcome.manifest.marks.len(),
                        outcome.manifest.types.len(),
                        outcome.manifest_bytes,
                        if outcome.written { "" } else { " (unchanged)" }
                    );
                }
            }
            Ok(())
        }
        Command::Manifest {
            file,
            pointer_depth,
            json,
        } => {
            let opts = BuildOptions {
                pointer_depth,
                ..BuildOptions::default()
            };
            let manifest = vmark_build::manifest_for_file(&file, &opts)?;
            print_manifest(&manifest, json)
        }
        Command::Extract { file, json } => {
            let data = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            match vmark_build::extract(&data).map_err(|e| format!("{}: {e}", file.display()))? {
                Some(manifest) => print_manifest(&manifest, json),
                None => Err(format!(
                    "{}: no embedded manifest (run `vmark-build embed {}`)",
                    file.display(),
                    file.display()
                )
                .into()),
            }
        }
    }
}

fn print_manifest(m: &Manifest, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    if json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    let size = vmark_proto::encode(m)?.len();
    println!("module:         {}", m.module);
    println!("kernel release: {}", m.kernel_release);
    println!("build id:       {}", m.build_id_hex());
    println!("pointer depth:  {}", m.pointer_depth);
    println!("types:          {}", m.types.len());
    println!("encoded size:   {size} bytes");
    println!("marks:");
    for mark in &m.marks {
        println!(
            "  {:<20} {:<40} size {:<6} flags {:<12} symbol {}",
            mark.name,
            m.types.type_name(mark.ty),
            mark.size,
            mark.flags.describe(),
            mark.symbol
        );
    }
    Ok(())
}
