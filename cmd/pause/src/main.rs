//! The pod sandbox's pause process: holds the pod's namespaces, reaps zombies, exits 0 on SIGTERM/SIGINT.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() {
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGCHLD]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pause: cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    };
    let is_init = std::process::id() == 1;
    for signal in signals.forever() {
        match signal {
            SIGCHLD => {
                // Only PID 1 inherits orphans; reap every exited child so none stays a zombie.
                if is_init {
                    reap();
                }
            }
            _ => std::process::exit(0),
        }
    }
}

fn reap() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}
