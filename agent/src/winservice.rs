//! `oqs-agent run --service`: the daemon under the Windows service control manager. A service stop
//! or a system shutdown cancels the daemon the way SIGTERM does on Linux: the round in progress is
//! spooled, un-acked reports stay on disk, the stream closes.
//!
//! Windows only and UNTESTED (no Windows target can be built on this project's machines; see the
//! README). Must never do more than translate service controls into the daemon's cancellation.
#![cfg(windows)]
// define_windows_service! generates the `extern "system"` entry point the SCM calls.
#![allow(unsafe_code)]

use crate::config::AgentConfig;
use std::ffi::OsString;
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

/// The name the MSI (`deploy/windows/msi/oqs-agent.wxs`) registers.
pub const SERVICE_NAME: &str = "oqs-agent";

static CONFIG: OnceLock<AgentConfig> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hands this process to the service control manager; returns once the service has stopped.
pub fn run_as_service(cfg: AgentConfig) -> anyhow::Result<()> {
    let _ = CONFIG.set(cfg);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)?;
    Ok(())
}

fn service_main(_args: Vec<OsString>) {
    if let Err(e) = serve() {
        tracing::error!(error = %e, "the oqs-agent service failed");
    }
}

fn status(state: ServiceState, accept: ServiceControlAccept, code: u32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: accept,
        exit_code: ServiceExitCode::Win32(code),
        checkpoint: 0,
        wait_hint: Duration::from_secs(15),
        process_id: None,
    }
}

fn serve() -> anyhow::Result<()> {
    let cfg = CONFIG
        .get()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the service started without its configuration"))?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let handle = service_control_handler::register(SERVICE_NAME, move |event| match event {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            stop.cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })?;
    handle.set_service_status(status(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        0,
    ))?;
    // The daemon runs on a runtime worker with a stack of its own size: the dispatcher's
    // service thread has a small one (a round's future outgrew it under Wine: the service died
    // silently after its first report).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 * 1024 * 1024)
        .build()?;
    let result = runtime
        .block_on(async { tokio::spawn(crate::daemon::run(cfg, shutdown)).await })
        .map_err(|e| anyhow::anyhow!("the daemon task failed: {e}"));
    // A name lookup still running on a blocking thread must not hold up the stop.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let result = result?;
    let code = u32::from(result.is_err());
    handle.set_service_status(status(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        code,
    ))?;
    result.map_err(Into::into)
}

/// Restart on failure, set through the SCM (the MSI runs `oqs-agent service-config
/// --restart-on-failure` after installing the service): 10 s, 10 s, then every 60 s, the count
/// reset after a day of no failure; a non-zero exit counts as a failure as well as a crash.
pub fn configure_restart_on_failure() -> anyhow::Result<()> {
    use windows_service::service::{
        ServiceAccess, ServiceAction, ServiceActionType, ServiceFailureActions,
        ServiceFailureResetPeriod,
    };
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(
        SERVICE_NAME,
        ServiceAccess::CHANGE_CONFIG | ServiceAccess::QUERY_CONFIG,
    )?;
    let restart = |secs| ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(secs),
    };
    service.update_failure_actions(ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
        reboot_msg: None,
        command: None,
        actions: Some(vec![restart(10), restart(10), restart(60)]),
    })?;
    service.set_failure_actions_on_non_crash_failures(true)?;
    Ok(())
}
