//! STAND-IN for `nvidia-smi`: there is no GPU on the test machines. It
//! answers only the query `build` makes (`trtllm::gpu`), from `STANDIN_GPUS`
//! ("NAME, COMPUTE_CAP, MEMORY" per GPU, separated by `;`), one CSV line per
//! GPU as `--format=csv,noheader` prints them. With `STANDIN_GPUS` empty or
//! unset it answers what the real one answers on a machine without GPUs:
//! "No devices were found" and exit status 6 (nvidia-smi's manual, RETURN
//! VALUE: 6 is "a query to find an object was unsuccessful").

const QUERY: [&str; 2] = [
    "--query-gpu=name,compute_cap,memory.total",
    "--format=csv,noheader",
];

pub fn main(args: &[String]) -> i32 {
    if args != QUERY {
        eprintln!("stand-in nvidia-smi: unexpected arguments: {}", args.join(" "));
        return 2;
    }
    let gpus = std::env::var("STANDIN_GPUS").unwrap_or_default();
    if gpus.is_empty() {
        println!("No devices were found");
        return 6;
    }
    for gpu in gpus.split(';') {
        println!("{gpu}");
    }
    0
}
