//! `mlx-vlm-bench`: the Rust port against Python mlx-vlm 0.7.6.
//!
//! `run` alternates fresh Rust and Python processes and prints medians and
//! ratios; `measure` is one Rust run (the twin of `tools/bench/measure.py`);
//! `checkpoints` writes the benchmark models; `overhead` times small ops.
//! See `tools/bench/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mlx_vlm_tools::bench::{checkpoints, driver, measure, overhead};

const MEASURE_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/measure.py");
const OVERHEAD_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/overhead.py");

#[derive(Parser)]
#[command(
    name = "mlx-vlm-bench",
    version,
    about = "Benchmark the Rust port against Python mlx-vlm"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Alternate Rust and Python runs and print medians and ratios.
    Run(RunCli),
    /// One in-process Rust run; prints one JSON line.
    Measure(MeasureCli),
    /// Write the benchmark checkpoints and the 448x448 and 896x896 test
    /// images.
    Checkpoints {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Rewrite checkpoints that already exist.
        #[arg(long)]
        force: bool,
        /// Write only the checkpoints whose names contain this (`gemma3`,
        /// `tiny`); repeat for several. Default: every one.
        #[arg(long)]
        only: Vec<String>,
    },
    /// Time per small op (scalar adds), Rust vs Python.
    Overhead {
        /// Ops per variant.
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// Ops built before each eval in the batched variant.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Python interpreter with mlx.
        #[arg(long, default_value = "python3")]
        python: PathBuf,
        /// Skip the Python side.
        #[arg(long)]
        no_python: bool,
        /// `overhead.py` to run.
        #[arg(long, default_value = OVERHEAD_PY)]
        overhead_py: PathBuf,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct Common {
    /// Checkpoint folder or Hugging Face repo id.
    #[arg(long)]
    model: String,
    /// Image path; repeat for several.
    #[arg(long = "image")]
    images: Vec<String>,
    /// Video path (a file; for the Rust side also a folder of frames),
    /// sampled at 2 fps as `mlx-vlm generate` does; repeat for several.
    /// Give each side its own with `--rust-args`/`--python-args`.
    #[arg(long = "video")]
    videos: Vec<String>,
    /// Audio clip path, for families that take audio; repeat for several.
    #[arg(long = "audio")]
    audio: Vec<String>,
    /// The user message.
    #[arg(long, default_value = "Describe this image.")]
    prompt: String,
    /// Most tokens to generate (greedy).
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
}

#[derive(Args)]
struct MeasureCli {
    #[command(flatten)]
    common: Common,
    /// A system message placed before the prompt.
    #[arg(long)]
    system: Option<String>,
    /// Cast the loaded parameters (`mlx-vlm generate --dtype`).
    #[arg(long, value_parser = mlx_vlm_tools::parse_dtype)]
    dtype: Option<mlx_vlm::mlx_rs::Dtype>,
    /// CPU streams a large product is split across (`mlx-vlm generate
    /// --cpu-parallelism`; default: every core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    cpu_parallelism: Option<u16>,
}

#[derive(Args)]
struct RunCli {
    #[command(flatten)]
    common: Common,
    /// Runs per implementation.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Untimed runs per implementation before the timed ones (the first
    /// run after writing or reading a checkpoint pays for the page cache
    /// and for reclaiming memory, whichever side it is).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Python interpreter with mlx-vlm 0.7.6.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Skip the Python side.
    #[arg(long)]
    no_python: bool,
    /// `measure.py` to run.
    #[arg(long, default_value = MEASURE_PY)]
    measure_py: PathBuf,
    /// One extra argument for the Rust `measure`; repeat for more
    /// (`--rust-args=--system --rust-args "Be brief."`).
    #[arg(long = "rust-args", allow_hyphen_values = true)]
    rust_args: Vec<String>,
    /// One extra argument for `measure.py` (any `mlx_vlm generate` option);
    /// repeat for more.
    #[arg(long = "python-args", allow_hyphen_values = true)]
    python_args: Vec<String>,
    /// Print the raw runs, medians and checks as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Measure(args) => measure_cmd(args),
        Command::Checkpoints { out, force, only } => checkpoints::write_all(&out, force, &only)
            .map(|paths| {
                for p in paths {
                    println!("{}", p.display());
                }
            }),
        Command::Overhead {
            n,
            batch,
            python,
            no_python,
            overhead_py,
            json,
        } => overhead_cmd(n, batch, (!no_python).then_some(python), &overhead_py, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn measure_cmd(args: MeasureCli) -> mlx_vlm::Result<()> {
    let m = measure::measure(&measure::MeasureArgs {
        model: args.common.model,
        images: args.common.images,
        videos: args.common.videos,
        audio: args.common.audio,
        prompt: args.common.prompt,
        system: args.system,
        max_tokens: args.common.max_tokens,
        dtype: args.dtype,
        cpu_parallelism: args.cpu_parallelism.map(usize::from),
    })?;
    println!("{}", m.to_json());
    Ok(())
}

fn run(args: RunCli) -> mlx_vlm::Result<()> {
    let rust_exe = std::env::current_exe()
        .map_err(|e| mlx_vlm::Error::io("the mlx-vlm-bench executable", e))?;
    let run_args = driver::RunArgs {
        model: args.common.model,
        images: args.common.images,
        videos: args.common.videos,
        audio: args.common.audio,
        prompt: args.common.prompt,
        max_tokens: args.common.max_tokens,
        reps: args.reps,
        warmup: args.warmup,
        rust_exe,
        rust_args: args.rust_args,
        python: (!args.no_python).then_some(args.python),
        measure_py: args.measure_py,
        python_args: args.python_args,
    };
    let report = driver::run(&run_args);
    if args.json {
        println!("{}", report.to_json(&run_args));
    } else {
        print!("{}", report.markdown(&run_args));
    }
    if report.rust.is_empty() {
        return Err(mlx_vlm::Error::InvalidArgument(
            "every Rust run failed; see the failures above".into(),
        ));
    }
    Ok(())
}

fn overhead_cmd(
    n: usize,
    batch: usize,
    python: Option<PathBuf>,
    script: &std::path::Path,
    json: bool,
) -> mlx_vlm::Result<()> {
    let rust = overhead::measure(n, batch)?;
    let python = match python {
        Some(p) => Some(overhead::measure_python(&p, script, n, batch)?),
        None => None,
    };
    if json {
        println!("{}", overhead::to_json(n, batch, rust, python));
    } else {
        print!("{}", overhead::table(n, batch, rust, python));
    }
    Ok(())
}
