//! `hx load`: images from an OCI layout directory, an oci-archive or a docker-save tarball,
//! named by `-i` or read from stdin (`hx load < x.tar`, `-i -`).
use hx_images::manifest::PlatformSpec;
use hx_images::Store;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// OCI layout directory, oci-archive or docker-save tarball (.tar or .tar.gz); `-` or none:
    /// stdin
    #[arg(short, long = "input", value_name = "PATH")]
    pub input: Option<PathBuf>,
    /// Platform to pick from a multi-platform index (os/arch[/variant])
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Print only image ids
    #[arg(short, long)]
    pub quiet: bool,
}

/// Archives from this size on get a progress bar (on a terminal); so do those of unknown size.
const LARGE: u64 = 32 << 20;

pub async fn run(g: &super::Globals, args: Args) -> anyhow::Result<i32> {
    let store =
        Store::open(&g.root)?.with_limits(hx_engine::hostconfig::load(&g.root)?.limits.images()?);
    let platform = PlatformSpec::parse(&args.platform)?;
    let input = args.input.filter(|p| p != Path::new("-"));
    let quiet = args.quiet;
    let images = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        match input {
            Some(p) if p.is_dir() => Ok(hx_images::load::load(&store, &p, &platform)?),
            Some(p) => {
                let f = std::fs::File::open(&p).map_err(|e| hx_images::Error::io(&p, e))?;
                let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
                let reader = with_progress(Box::new(f), size, quiet);
                Ok(hx_images::load::load_stream(&store, &p, reader, &platform)?)
            }
            None => {
                let stdin = std::io::stdin();
                if stdin.is_terminal() {
                    return Err(super::Fixed::wrap(
                        1,
                        anyhow::anyhow!("requested load from stdin, but stdin is empty"),
                    ));
                }
                // `< x.tar` is a file whose size is known; a pipe's is not.
                let size = std::fs::metadata("/proc/self/fd/0")
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len());
                let reader = with_progress(Box::new(stdin.lock()), size, quiet);
                Ok(hx_images::load::load_stream(
                    &store,
                    Path::new("<stdin>"),
                    reader,
                    &platform,
                )?)
            }
        }
    })
    .await??;
    for img in images {
        if args.quiet {
            outln!("{}", img.id);
        } else if img.names.is_empty() {
            outln!("Loaded image ID: {}", img.id);
        } else {
            for n in &img.names {
                outln!(
                    "Loaded image: {}",
                    hx_images::Reference::parse(n)
                        .map(|r| r.familiar())
                        .unwrap_or(n.clone())
                );
            }
        }
    }
    Ok(0)
}

/// `reader` counted into a progress bar on stderr when that is a terminal and the archive is
/// large (or of unknown size); as it is otherwise.
fn with_progress(reader: Box<dyn Read>, size: Option<u64>, quiet: bool) -> Box<dyn Read> {
    if quiet || !std::io::stderr().is_terminal() || size.is_some_and(|s| s < LARGE) {
        return reader;
    }
    let bar = match size {
        Some(s) => indicatif::ProgressBar::new(s).with_style(
            indicatif::ProgressStyle::with_template(
                "Loading {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("template"),
        ),
        None => indicatif::ProgressBar::no_length().with_style(
            indicatif::ProgressStyle::with_template("Loading {spinner} {bytes} {bytes_per_sec}")
                .expect("template"),
        ),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    Box::new(Progress { reader, bar })
}

struct Progress {
    reader: Box<dyn Read>,
    bar: indicatif::ProgressBar,
}

impl Read for Progress {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read(buf)?;
        self.bar.inc(n as u64);
        if n == 0 {
            self.bar.finish_and_clear();
        }
        Ok(n)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
