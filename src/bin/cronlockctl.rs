//! `cronlockctl`: see, explain and clear cronlock's locks (`cronlock::ctl`).

fn main() -> std::process::ExitCode {
    cronlock::ctl::main()
}
