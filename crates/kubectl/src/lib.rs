//! Our `kubectl`: a drop-in for the upstream client for the everyday commands.
//!
//! Start at [`run`]: [`cli::Options`] is parsed by clap with upstream's flag names, a
//! [`session::Session`] holds the lazily built kube-rs client and the discovered
//! [`discovery::Catalog`], and each command lives in its own module under [`cmd`]. Output goes
//! through [`printers`] (server-side tables, yaml/json/name/jsonpath/custom-columns).
//! Errors print as upstream prints them ([`error::Error::report`]) and set the exit status.

pub mod cli;
pub mod cmd;
pub mod discovery;
pub mod duration;
pub mod error;
pub mod manifest;
pub mod overrides;
pub mod patch;
pub mod printers;
pub mod session;

pub use cli::Options;
pub use error::{Error, Result};

use cli::Command;
use session::{Io, Session};

/// Runs one kubectl invocation against the real stdout/stderr.
pub async fn run(options: Options) -> Result<()> {
    let mut session = Session::new(options.global.clone(), Io::stdio());
    execute(&mut session, options.command).await
}

/// Runs a command in a session (tests pass sessions with in-memory output).
pub async fn execute(s: &mut Session, mut command: Command) -> Result<()> {
    // `create rolebinding|clusterrolebinding --user` names subjects (a local flag shadowing the
    // global one, as upstream), not the kubeconfig user.
    if let Command::Create(cli::CreateArgs {
        generator:
            Some(
                cli::CreateCommand::Rolebinding(binding)
                | cli::CreateCommand::Clusterrolebinding(binding),
            ),
        ..
    }) = &mut command
    {
        binding.users = std::mem::take(&mut s.flags.user);
    }
    let result = dispatch(s, command).await;
    match result {
        Err(e) if e.is_connection_refused() => {
            let server = match s.config().await {
                Ok(config) => {
                    let url = &config.cluster_url;
                    let host = url.host().unwrap_or("localhost");
                    let port = url
                        .port_u16()
                        .unwrap_or(if url.scheme_str() == Some("http") {
                            80
                        } else {
                            443
                        });
                    format!("{host}:{port}")
                }
                Err(_) => "localhost:8080".to_string(),
            };
            Err(Error::ConnectionRefused(server))
        }
        other => other,
    }
}

async fn dispatch(s: &mut Session, command: Command) -> Result<()> {
    match command {
        Command::Get(a) => cmd::get::run(s, a).await,
        Command::Create(a) => cmd::create::run(s, a).await,
        Command::Apply(a) => cmd::apply::run(s, a).await,
        Command::Delete(a) => cmd::delete::run(s, a).await,
        Command::Logs(a) => cmd::logs::run(s, a).await,
        Command::Exec(a) => cmd::exec::run(s, a).await,
        Command::Scale(a) => cmd::scale::run(s, a).await,
        Command::Rollout(a) => cmd::rollout::run(s, a).await,
        Command::Expose(a) => cmd::expose::run(s, a).await,
        Command::Run(a) => cmd::run::run(s, a).await,
        Command::Set(a) => match a.command {
            cli::SetCommand::Image(a) => cmd::set_image::run(s, a).await,
            cli::SetCommand::Env(a) => cmd::set_env::run(s, a).await,
            cli::SetCommand::Resources(a) => cmd::set_resources::run(s, a).await,
        },
        Command::Version(a) => cmd::version::run(s, a).await,
        Command::ClusterInfo(_) => cmd::cluster_info::run(s).await,
        Command::ApiResources(a) => cmd::api_resources::run(s, a).await,
        Command::Describe(a) => cmd::describe::run(s, a).await,
        Command::Wait(a) => cmd::wait::run(s, a).await,
        Command::Label(a) => cmd::label::run(s, a, cmd::label::Field::Labels).await,
        Command::Annotate(a) => cmd::label::run(s, a, cmd::label::Field::Annotations).await,
        Command::Patch(a) => cmd::patch::run(s, a).await,
        Command::Config(a) => cmd::config::run(s, a).await,
        Command::Cordon(a) => cmd::node::cordon(s, a, true).await,
        Command::Uncordon(a) => cmd::node::cordon(s, a, false).await,
        Command::Taint(a) => cmd::node::taint(s, a).await,
        Command::Drain(a) => cmd::drain::run(s, a).await,
        Command::Events(a) => cmd::events::run(s, a).await,
        Command::Auth(a) => cmd::auth::run(s, a).await,
        Command::ApiVersions(_) => cmd::auth::api_versions(s).await,
        Command::Edit(a) => cmd::edit::run(s, a).await,
        Command::PortForward(a) => cmd::port_forward::run(s, a).await,
        Command::Attach(a) => cmd::attach::run(s, a).await,
        Command::Cp(a) => cmd::cp::run(s, a).await,
        Command::Diff(a) => cmd::diff::run(s, a).await,
        Command::Autoscale(a) => cmd::autoscale::run(s, a).await,
        Command::Replace(a) => cmd::replace::run(s, a).await,
        Command::Top(a) => cmd::top::run(s, a).await,
        Command::Completion(a) => cmd::completion::run(s, a),
    }
}
