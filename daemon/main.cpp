// custodyd: the custody daemon. Reads the configuration, opens the token, checks the keys it
// knows, and serves the service and admin sockets until SIGTERM, then drains and exits 0.
// Startup problems are fatal with a message that says what to fix.
#include <sys/prctl.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <openssl/rand.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <iostream>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/hex.h"
#include "config/config.h"
#include "daemon/startup_checks.h"
#include "daemon/core/audit/audit_log.h"
#include "daemon/core/keys/data_plane.h"
#include "daemon/core/admin/admin_requests.h"
#include "daemon/core/attestation/attestation.h"
#include "daemon/core/attestation/host_identity.h"
#include "daemon/core/keys/key_admin.h"
#include "daemon/core/keys/lifecycle_scheduler.h"
#include "daemon/core/keys/token_key_vault.h"
#include "daemon/core/recovery/recovery.h"
#include "daemon/kms/kms_server.h"
#include "daemon/service/admin_operations.h"
#include "daemon/service/routes.h"
#include "daemon/core/state/postgres/fleet_sync.h"
#include "daemon/core/state/postgres/leased_work.h"
#include "daemon/core/state/postgres/postgres_state_store.h"
#include "daemon/service/service.h"
#include "daemon/service_manager.h"
#include "daemon/transport/server.h"
#include "daemon/xks/secret_file.h"
#include "daemon/xks/xks_front_end.h"
#include "pkcs11/call_latency.h"
#include "pkcs11/capabilities.h"
#include "pkcs11/pin_source.h"

namespace {

using namespace custody;

[[noreturn]] void fatal(const std::string& message) {
  spdlog::critical("{}", message);
  std::exit(1);
}

// The state cannot be trusted at start (a read error, a corrupt page, rows that do not add up):
// starting on part of it would lose keys, requests or jobs without a word, so custodyd refuses.
[[noreturn]] void state_fatal(const core::StateStoreApi& store, const std::string& what, const std::string& message) {
  // store.path() is the file, or the conninfo (which never holds the password).
  if (dynamic_cast<const core::PostgresStateStore*>(&store))
    fatal("cannot start: the shared state database (" + store.path() + ") could not be " + what + ": " + message +
          ". Nothing was changed. Check that PostgreSQL is reachable with state.dsn and its password and that"
          " the custody tables are intact (if they are not, restore the database from its backup: see docs/fleet.md),"
          " start custodyd again, and run `custodyctl keys check`.");
  fatal("cannot start: the state database " + store.path() + " could not be " + what + ": " + message +
        ". Nothing was changed. Restore state.db from its latest backup (see 'Backups of state.db' in"
        " docs/security.md), start custodyd again, and run `custodyctl keys check`.");
}

// DESIGN invariant 4: no core dumps, no ptrace attach, so key material cannot be read out of the
// process by another process of the same user.
void harden_process() {
  if (::prctl(PR_SET_DUMPABLE, 0) != 0) fatal(std::string("cannot disable core dumps and ptrace attach: ") + std::strerror(errno));
  rlimit none{0, 0};
  if (::setrlimit(RLIMIT_CORE, &none) != 0) fatal(std::string("cannot set the core file size to 0: ") + std::strerror(errno));
  // signal() fails only for an invalid signal number: these two are valid everywhere.
  std::signal(SIGPIPE, SIG_IGN);
  // A full disk or file size limit must make the audit write fail (and requests 503), not kill us.
  std::signal(SIGXFSZ, SIG_IGN);
}

// The state backend (docs/fleet.md): SQLite at state.path, or the PostgreSQL database a fleet shares.
core::PgSettings postgres_settings(const config::Config& cfg) {
  core::PgSettings settings{cfg.state_dsn, cfg.state_password_file};
  if (cfg.state_password_credential) {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir)
      fatal("state.password_credential " + cfg.state_password_file + " needs $CREDENTIALS_DIRECTORY (LoadCredential=)");
    settings.password_file = std::string(dir) + "/" + cfg.state_password_file;
  }
  return settings;
}

// fleet_host_id: a fleet member's own id (PostgresStateStore::open's owner).
std::optional<std::unique_ptr<core::StateStoreApi>> open_state_store(const config::Config& cfg,
                                                                     const std::string& fleet_host_id) {
  if (cfg.state_backend == "postgresql") {
    auto pg = core::PostgresStateStore::open(postgres_settings(cfg), fleet_host_id);
    if (!pg) fatal(pg.error() + " (state.dsn)");
    spdlog::info("state: PostgreSQL {}", cfg.state_dsn);
    return std::unique_ptr<core::StateStoreApi>(std::move(*pg));
  }
  auto sqlite = core::StateStore::open(cfg.state_path);
  if (!sqlite) fatal(sqlite.error() + " (state.path)");
  return std::unique_ptr<core::StateStoreApi>(std::move(*sqlite));
}

core::AuditDurability durability(config::Durability d) {
  switch (d) {
    case config::Durability::always: return core::AuditDurability::always;
    case config::Durability::none: return core::AuditDurability::none;
    case config::Durability::group: break;
  }
  return core::AuditDurability::group;
}

core::AuditEvent lifecycle_event(const char* type) {
  core::AuditEvent e;
  e.type = type;
  e.request_id = "-";
  e.client = core::Peer{::getuid(), ::getgid(), ::getpid()};
  return e;
}

// Below this median, the token lives in this process (or next to it) and a PKCS#11 call costs
// less than handing the request to another thread: calls are made on the I/O thread.
constexpr std::chrono::microseconds kInlineCallLimit{50};

// token.workers, with "auto" settled by timing the token.
unsigned choose_workers(const config::Token& token, p11::SessionPool& pool) {
  if (token.workers) return *token.workers;
  auto latency = p11::median_call_latency(pool);
  if (!latency) {
    spdlog::warn("token.workers auto: cannot time the token ({}); using a pool of {} workers",
                 latency.error().describe(), token.sessions);
    return token.sessions;
  }
  if (*latency < kInlineCallLimit) {
    spdlog::info("token.workers auto: the token answers in {} µs; PKCS#11 calls run on the I/O thread", latency->count());
    return 0;
  }
  spdlog::info("token.workers auto: the token answers in {} µs; a pool of {} workers overlaps its calls",
               latency->count(), token.sessions);
  return token.sessions;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"custodyd: key custody daemon over a PKCS#11 token"};
  std::string config_path = "/etc/custody/custodyd.yaml";
  bool check_only = false;
  app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  bool syntax_only = false;
  auto* check_flag = app.add_flag(
      "--check-config", check_only,
      "check the configuration and everything start-up reads before the token (keys, PIN file, paths), and exit");
  app.add_flag("--syntax-only", syntax_only, "with --check-config: the file alone, not the files and paths it names")
      ->needs(check_flag);
  app.set_version_flag("--version", std::string("custodyd ") + CUSTODY_VERSION);
  CLI11_PARSE(app, argc, argv);

  spdlog::set_default_logger(spdlog::stderr_logger_mt("custodyd"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  harden_process();
  // Sockets systemd passed are taken (and made close-on-exec) before anything else runs: nothing a
  // PKCS#11 module starts may inherit them.
  auto inherited = transport::take_inherited_sockets();
  if (!inherited) fatal("socket activation: " + inherited.error());

  auto loaded = config::load_config(config_path);
  if (!loaded) {
    for (const auto& e : loaded.error()) std::cerr << e.format(config_path) << '\n';
    std::cerr << "custodyd: the configuration has " << loaded.error().size() << " problem(s)\n";
    return 2;
  }
  const config::Config& cfg = *loaded;
  if (check_only) {
    const auto problems = syntax_only ? std::vector<std::string>{} : config::check_startup(cfg);
    for (const auto& problem : problems) std::cerr << config_path << ": " << problem << '\n';
    if (!problems.empty()) {
      std::cerr << "custodyd: the configuration has " << problems.size() << " problem(s)\n";
      return 2;
    }
    std::cout << config_path << ": configuration is valid\n";
    return 0;
  }
  // What --check-config checks (daemon/startup_checks.h), refused before the token is touched.
  if (auto ok = config::check_pin_file(cfg.token.pin); !ok) fatal(ok.error());
  if (auto ok = config::prepare_directory_of(cfg.state_path, "state.path", true); !ok) fatal(ok.error());
  if (auto ok = config::prepare_directory_of(cfg.audit.path, "audit.path", true); !ok) fatal(ok.error());
  if (auto ok = config::check_socket_path(cfg.service_socket, "sockets.service.path"); !ok) fatal(ok.error());
  if (auto ok = config::check_socket_path(cfg.admin_socket, "sockets.admin.path"); !ok) fatal(ok.error());
  if (cfg.kms)
    if (auto ok = config::check_socket_path(cfg.kms->socket, "sockets.kms.path"); !ok) fatal(ok.error());
  auto operators = config::load_operators(cfg.dual_control);
  if (!operators) fatal(operators.error());

  auto pin = p11::read_pin(cfg.token.pin);
  if (!pin) fatal("token PIN: " + pin.error());
  auto module = p11::Module::load(cfg.token.module, cfg.token.init_args);
  if (!module) fatal(module.error() + " (token.module in " + config_path + ")");
  p11::SessionPool pool(**module, p11::TokenSelector{cfg.token.label, cfg.token.serial}, std::move(*pin),
                        cfg.token.sessions);
  if (auto ok = pool.start(); !ok) fatal("token: " + ok.error());
  auto info = p11::token_info((*module)->api(), pool.slot());
  if (!info) fatal("token: " + info.error().describe());
  auto caps = p11::Capabilities::probe((*module)->api(), pool.slot());
  if (!caps) fatal("token: cannot list mechanisms: " + caps.error().describe());
  if (!caps->aes_gcm()) fatal("the token cannot generate 256-bit AES keys with CKM_AES_GCM encrypt/decrypt; custody needs both");
  if (!caps->hmac_sha256())
    fatal("the token lacks CKM_GENERIC_SECRET_KEY_GEN or CKM_SHA256_HMAC sign; custody needs them for hmac-sha256 keys");

  // A fleet member's own id, kept beside its audit log: it names the member's attestation key in
  // the shared token and owns the key changes and quorums it records (docs/fleet.md).
  const bool fleet_member = cfg.state_backend == "postgresql";
  std::string fleet_host_id;
  if (fleet_member) {
    auto own = core::load_or_create_host_id(core::host_identity_path(cfg.audit.path));
    if (!own) fatal("cannot start: " + own.error());
    fleet_host_id = std::move(*own);
  }
  auto store = open_state_store(cfg, fleet_host_id);
  auto keys = (*store)->load_keys();
  if (!keys) state_fatal(**store, "read", keys.error().message);

  core::SystemClock clock;
  core::TokenKeyVault vault(pool);
  core::KeyRegistry registry;
  for (auto& key : *keys) registry.put(std::move(key));

  // The instance id (shared by a fleet: admin challenges name it) and this host's own id: the same
  // for one host, the member's own for a fleet.
  std::uint8_t random_id[16];
  if (RAND_bytes(random_id, sizeof random_id) != 1) fatal("no randomness for the instance id");
  auto instance_id = (*store)->meta("instance_id", hex_lower(random_id));
  if (!instance_id) state_fatal(**store, "read", instance_id.error().message);
  const std::string host_id = fleet_member ? fleet_host_id : *instance_id;
  bool attestation_key_created = false;
  auto attestation_key = core::AttestationKey::open(
      pool, fleet_member ? std::string(core::kFleetAttestationLabelPrefix) + host_id : core::kAttestationKeyLabel,
      attestation_key_created);
  if (!attestation_key) fatal("attestation key: " + attestation_key.error());
  if (attestation_key_created)
    spdlog::warn("generated the attestation key in the token: key_id {}\n{}", attestation_key->key_id(),
                 attestation_key->public_key_pem());
  else
    spdlog::info("attestation key_id {}", attestation_key->key_id());

  auto audit = core::AuditLog::open(cfg.audit.path, durability(cfg.audit.durability), clock);
  if (!audit) fatal(audit.error() + " (audit.path)");
  (*audit)->set_checkpoints(
      [&attestation_key](std::string_view message) -> Expected<Bytes, std::string> {
        auto sig = attestation_key->sign(message);
        if (!sig) return unexpected(sig.error().message);
        return std::move(*sig);
      },
      cfg.audit.checkpoint_every, core::Peer{::getuid(), ::getgid(), ::getpid()});
  (*audit)->set_checkpoint_interval(cfg.audit.checkpoint_interval);
  (*audit)->set_rotation(cfg.audit.max_file_bytes);
  (*audit)->set_retention({cfg.audit.max_files, cfg.audit.max_total_bytes, cfg.audit.min_free_bytes});
  auto start = lifecycle_event("daemon.start");
  start.extra["version"] = CUSTODY_VERSION;
  start.extra["config_sha256"] = cfg.sha256;
  start.extra["token"] = info->label;
  start.extra["attestation_key_id"] = attestation_key->key_id();
  start.extra["instance"] = host_id;
  if (!(*audit)->write({start})) fatal("cannot write the audit log " + cfg.audit.path);

  core::KeyAdmin key_admin(registry, **store, vault, clock,
                           core::LifecycleSettings{cfg.lifecycle.min_destruction_wait.count() / 1000});
  // Changes a crash cut short are finished or undone before anything else touches the keys.
  // A fleet member finishes its own interrupted work and that of members that are gone, holding
  // their leases until both recoveries below are done.
  if (auto ok = (*store)->begin_recovery(); !ok) {
    if ((*store)->failing()) state_fatal(**store, "read", ok.error().message);
    fatal("cannot start: " + ok.error().message + ". Give every fleet member its own audit directory (docs/fleet.md)");
  }
  auto recovered = key_admin.recover();
  if (!recovered) {
    if ((*store)->failing())  // the store failed, not the recovery's own logic
      state_fatal(**store, "read during recovery of interrupted key changes", recovered.error().message);
    fatal("recovery of interrupted key changes failed: " + recovered.error().message);
  }
  // What start-up itself changed must be on record before anything is served: without the
  // record the daemon does not start (the change is redone or found again at the next start).
  const auto audit_recovery = [&audit, &cfg](const std::string& what) {
    auto e = lifecycle_event("daemon.recovery");
    e.extra["action"] = what;
    if (!(*audit)->write({e}))
      fatal("cannot write the audit record of a start-up recovery (" + what + ") to " + cfg.audit.path);
  };
  for (const auto& what : *recovered) {
    spdlog::warn("recovery: {}", what);
    audit_recovery(what);
  }
  service::HealthState health;
  health.watch_store(store->get());
  auto report = pool.read_at_start([&key_admin] { return key_admin.reconcile(); });
  if (!report) fatal("cannot check the keys against the token: " + report.error().message);
  for (const auto& m : report->missing) spdlog::error("KEY CHECK FAILED: token object missing: {}", m);
  for (const auto& a : report->altered) spdlog::error("KEY CHECK FAILED: token object altered: {}", a);
  for (const auto& st : report->strays) spdlog::warn("token object unknown to the state: {}", st);
  health.set_reconcile(*report);

  core::UsageMeter meter(**store);
  core::DataPlane data_plane(registry, vault, &meter);
  core::LifecycleScheduler scheduler(key_admin, registry, meter, **audit, clock, cfg.lifecycle.check_interval);
  meter.on_limit([&scheduler](const std::string&) { scheduler.wake(); });

  service::Metrics metrics;
  service::ServiceContext context{registry, vault, data_plane, key_admin, **audit, metrics,
                                  service::TokenSummary{info->label, info->manufacturer, info->model},
                                  cfg.limits.max_json_depth, nullptr, nullptr, nullptr, health, &meter,
                                  cfg.lifecycle.default_usage_limit};
  context.pool = &pool;

  // Dual control: the requests waiting for the approvals of the operators loaded above.
  core::QuorumPolicy quorum{cfg.dual_control.quorum};
  const core::LifecycleSettings lifecycle{cfg.lifecycle.min_destruction_wait.count() / 1000};
  core::AdminRequests requests(
      **store, std::move(*operators), quorum, clock, *instance_id,
      std::chrono::duration_cast<std::chrono::seconds>(cfg.dual_control.request_ttl),
      [&context, lifecycle](const std::string& op, const boost::json::object& params) {
        return service::validate_admin_operation(context, lifecycle, op, params);
      },
      [&context](const std::string& op, const boost::json::object& params, const std::string& id) {
        return service::run_admin_operation(context, op, params, id);
      },
      [&context](const std::string& op, const boost::json::object& params) {
        return service::admin_operation_result(context, op, params);
      },
      [&audit](std::vector<core::AuditEvent> events) { return (*audit)->write(std::move(events)); });
  context.requests = &requests;
  core::TokenImporter importer(pool);
  core::ImportJobs jobs(**store, importer, registry, key_admin, clock);
  if (auto ok = jobs.load(); !ok) state_fatal(**store, "read", ok.error().message);
  // Import-job key pairs no active job owns (a crash cut their job short) are destroyed now: the
  // contract promises a job's pair lives only as long as the job.
  auto import_objects =
      pool.read_at_start([&importer] { return importer.find_labelled_pairs(core::kImportLabelPrefix); });
  if (!import_objects) fatal("cannot list the import-job keys in the token: " + import_objects.error().message);
  for (const auto& orphan : jobs.orphaned_wrapping_keys(*import_objects)) {
    auto destroyed = importer.destroy_wrapping_pair(orphan);
    const std::string what = "import-job key pair " + orphan.label + " belongs to no active job: " +
                             (destroyed ? "destroyed" : "NOT destroyed: " + destroyed.error().message);
    if (destroyed) spdlog::warn("recovery: {}", what);
    else spdlog::error("recovery: {}", what);
    audit_recovery(what);
  }
  context.jobs = &jobs;
  auto library = (*module)->info();
  core::Attestor attestor(*attestation_key, vault, **audit, requests,
                          core::AttestedToken{info->label, info->manufacturer, info->model, info->serial,
                                              info->hardware_version, info->firmware_version, cfg.token.module,
                                              library ? library->manufacturer : "", library ? library->description : "",
                                              library ? library->version : ""},
                          core::AttestedDaemon{CUSTODY_VERSION, *instance_id, cfg.sha256}, clock);
  context.attestor = &attestor;
  attestor.set_import_jobs(&jobs);
  // Recovery (CONTRACT §11) before admin requests are recovered: an export or import a crash cut
  // short runs again through it.
  core::RecoveryToken recovery_token(pool);
  core::Recovery recovery(recovery_token, registry, key_admin, vault, **store, *attestation_key, clock,
                          core::RecoveryIdentity{CUSTODY_VERSION, *instance_id});
  attestor.set_recovery(&recovery);
  if (fleet_member) attestor.set_fleet(&pool, host_id);
  if (auto ok = requests.load(); !ok) state_fatal(**store, "read", ok.error().message);
  const auto self = lifecycle_event("daemon.recovery");
  auto finished = requests.recover(core::AdminCaller{self.request_id, self.client});
  if (!finished) {
    if ((*store)->failing())
      state_fatal(**store, "read during recovery of admin requests", finished.error().message);
    fatal("recovery of admin requests failed: " + finished.error().message);
  }
  for (const auto& what : *finished) {
    spdlog::warn("recovery: {}", what);
    audit_recovery(what);
  }
  (*store)->end_recovery();
  for (const auto& op : requests.operators().all()) spdlog::info("operator {} key_id {}", op.name, op.key_id);

  // Expired import jobs lose their key pairs, also those that expired while the daemon was down.
  // The scheduler runs only while the log accepts records; an expiry whose record still fails is
  // counted with the unaudited admin changes, which an alert watches.
  scheduler.add_task([&jobs, &audit, &metrics] {
    for (const auto& id : jobs.expire_due()) {
      auto e = lifecycle_event("lifecycle.import-job-expired");
      e.extra["import_job"] = id;
      if ((*audit)->write({e})) continue;
      spdlog::error("import job {} expired but its audit record could not be written", id);
      metrics.count_unaudited_admin_change();
    }
  });
  // Destructions and job expiries that fell due while the daemon was down run now, before serving.
  // A fleet runs it on one daemon at a time: the one holding the lease (taken over when it dies).
  std::unique_ptr<core::LeasedWork> leased_lifecycle;
  if (auto* shared = dynamic_cast<core::PostgresStateStore*>(store->get())) {
    leased_lifecycle = std::make_unique<core::LeasedWork>(*shared, "lifecycle", cfg.lifecycle.check_interval,
                                                          [&scheduler] { scheduler.run_once(); });
    meter.on_limit([&leased_lifecycle](const std::string&) { leased_lifecycle->wake(); });
    leased_lifecycle->start();
  } else {
    scheduler.run_once();
    scheduler.start();
  }
  // A fleet (state.backend postgresql): what other daemons commit is served here within the
  // resync interval at worst; the change feed usually brings it sooner.
  std::unique_ptr<core::FleetSync> fleet;
  if (cfg.state_backend == "postgresql") {
    core::FleetReloads reloads{
        [&store, &registry] { return core::reload_keys(**store, registry); },
        [&requests] { return requests.load(); }, [&jobs] { return jobs.load(); }};
    fleet = std::make_unique<core::FleetSync>(postgres_settings(cfg), std::move(reloads), std::chrono::milliseconds(1000));
    fleet->start();
    health.watch_fleet([&fleet, max_staleness = cfg.state_max_staleness] {
      return service::HealthState::FleetSync{fleet->failing(), fleet->unsynced_for(), max_staleness};
    });
  }
  service::Service service_socket(service::service_routes(context), context);
  service::Service admin_socket(service::admin_routes(context), context);

  const unsigned worker_count = choose_workers(cfg.token, pool);
  boost::asio::io_context io(1);
  // The admin socket's requests always run on the pool (key generation may be slow), so it has
  // at least one thread.
  boost::asio::thread_pool workers(std::max(worker_count, 1u));
  // Requests wait for their audit records on the I/O thread: each written group is handed back in
  // one post, not one per request.
  (*audit)->set_delivery([&io](core::AuditLog::Completions completions, bool written) {
    boost::asio::post(io, [completions = std::move(completions), written] {
      for (const auto& done : completions) done(written);
    });
  });
  const auto& lim = cfg.limits;
  transport::Server server(io, workers,
                           transport::Limits{.max_body_bytes = lim.max_body_bytes,
                                             .max_header_bytes = lim.max_header_bytes,
                                             .max_connections = lim.max_connections,
                                             .max_connections_per_uid = lim.max_connections_per_uid,
                                             .admin_connections = lim.admin_connections,
                                             .max_in_flight = lim.max_in_flight,
                                             .uid_requests_per_second = lim.uid_requests_per_second,
                                             .uid_burst = lim.uid_burst,
                                             .workers = worker_count,
                                             .first_byte_timeout = lim.first_byte_timeout,
                                             .idle_timeout = lim.idle_timeout,
                                             .request_timeout = lim.request_timeout},
                           metrics);
  // Socket activation: a socket systemd passed (named by FileDescriptorName=, or bound to the
  // configured path) is served as it is; a socket not passed is bound here as without systemd.
  ServiceManager service_manager;
  auto socket_spec = [&](const std::string& name, const auto& socket) {
    transport::SocketSpec spec{socket.path, socket.mode, socket.group};
    auto claimed = transport::claim_inherited_socket(*inherited, name, socket.path);
    if (!claimed) fatal("socket activation: " + claimed.error());
    if (*claimed) {
      spec.inherited_fd = (*claimed)->fd;
      spdlog::info("sockets.{}: serving the socket systemd passed for {}", name, socket.path);
    }
    return spec;
  };
  const auto service_spec = socket_spec("service", cfg.service_socket);
  const auto admin_spec = socket_spec("admin", cfg.admin_socket);
  const auto kms_spec = cfg.kms ? std::optional(socket_spec("kms", cfg.kms->socket)) : std::nullopt;
  for (const auto& extra : *inherited)
    fatal("socket activation: systemd passed a socket named '" + extra.name + "' bound to '" + extra.path +
          "' that is neither sockets.service.path nor sockets.admin.path nor sockets.kms.path" +
          (cfg.kms ? "" : " (the kms socket is off: this config has no sockets.kms and kms sections)") +
          "; fix FileDescriptorName= (service, admin or kms) or ListenStream=");
  if (auto ok = server.listen(service_spec, transport::ListenerKind::service, service_socket); !ok) fatal(ok.error());
  if (auto ok = server.listen(admin_spec, transport::ListenerKind::admin, admin_socket); !ok) fatal(ok.error());
  // The AWS KMS External Key Store proxy: a TCP listener sharing the Unix sockets' transport.
  xks::CredentialSet xks_credentials;
  std::unique_ptr<xks::XksFrontEnd> xks_front_end;
  std::uint16_t xks_port = 0;
  if (cfg.xks) {
    const auto& x = *cfg.xks;
    auto credentials = config::read_xks_credentials(x);  // daemon/startup_checks.h
    if (!credentials) fatal(credentials.error());
    xks_credentials.replace(std::move(*credentials));
    xks::XksSettings settings;
    settings.uri_prefix = x.uri_prefix;
    settings.sigv4.region = x.region;
    settings.peer = core::Peer{x.acts_as_uid, x.acts_as_gid, 0};
    settings.keys = x.keys;
    settings.health_key = x.health_key;
    settings.ping_path = x.ping_path;
    settings.health_cache = x.health_cache;
    for (const auto& rule : x.authorization)
      settings.authorization.push_back({rule.name, rule.keys, rule.principals, rule.kms_key_arns, rule.operations,
                                        rule.source_vpcs, rule.source_vpces});
    settings.proxy_model = std::string("custodyd ") + CUSTODY_VERSION;
    settings.ekm_vendor = info->manufacturer;
    settings.ekm_model = info->model;
    settings.ekm_id = info->label + (info->serial.empty() ? "" : " " + info->serial);
    if (fleet_member)
      settings.fleet_size = [&pool, &host_id]() -> std::optional<std::size_t> {
        auto instances = core::list_fleet_instances(pool, host_id);
        if (!instances) return std::nullopt;
        return instances->size();
      };
    xks_front_end = std::make_unique<xks::XksFrontEnd>(std::move(settings), xks_credentials, registry, vault, **audit,
                                                       metrics, &health);
    transport::TcpSpec spec{x.address, x.port, std::nullopt};
    if (x.tls)
      spec.tls = transport::TlsSpec{x.tls->certificate, x.tls->private_key, x.tls->client_ca, x.tls->client_subject};
    auto port = server.listen_tcp(spec, *xks_front_end);
    if (!port) fatal("xks: " + port.error());
    xks_port = *port;
    for (const auto& [id, name] : x.keys)
      if (!registry.find(name)) spdlog::warn("xks.keys: external key '{}' names key '{}', which does not exist yet", id, name);
    if (!registry.find(x.health_key))
      spdlog::warn("xks.health_key '{}' does not exist yet; health answers UNAVAILABLE until it does", x.health_key);
  }
  // SIGHUP: the xks credentials and TLS certificate are read again (rotation without a restart).
  boost::asio::signal_set reload_signals(io);
  std::function<void()> wait_for_reload;
  if (cfg.xks) {
    if (boost::system::error_code ec; reload_signals.add(SIGHUP, ec), ec) fatal("cannot catch SIGHUP: " + ec.message());
    wait_for_reload = [&] {
      reload_signals.async_wait([&](const boost::system::error_code& ec, int) {
        if (ec) return;
        auto fresh = config::read_xks_credentials(*cfg.xks);
        if (fresh) {
          xks_credentials.replace(std::move(*fresh));
          spdlog::info("SIGHUP: xks credentials reloaded");
        } else {
          spdlog::error("SIGHUP: xks credentials NOT reloaded, the old ones stay: {}", fresh.error());
        }
        if (const auto& t = cfg.xks->tls) {
          auto context = transport::make_tls_context({t->certificate, t->private_key, t->client_ca, t->client_subject});
          if (context) {
            server.replace_tls_context(xks_port, std::move(*context));
            spdlog::info("SIGHUP: xks TLS certificate reloaded");
          } else {
            spdlog::error("SIGHUP: xks TLS certificate NOT reloaded: {}", context.error());
          }
        }
        wait_for_reload();
      });
    };
    wait_for_reload();
  }
  // The Kubernetes KMS v2 socket: gRPC handlers run their token calls on the same worker pool.
  std::unique_ptr<kms::KmsServer> kms_server;
  if (cfg.kms) {
    auto started = kms::KmsServer::start(
        io, *kms_spec,
        kms::KmsSettings{.key = cfg.kms->key,
                         .healthz_interval = cfg.kms->healthz_interval,
                         .max_message_bytes = lim.max_body_bytes,
                         .request_timeout = lim.request_timeout,
                         .idle_timeout = lim.idle_timeout,
                         .max_connections = lim.max_connections,
                         .max_connections_per_uid = lim.max_connections_per_uid,
                         .max_in_flight = lim.max_in_flight},
        kms::KmsCore{registry, data_plane, **audit, metrics,
                     [&workers](std::function<void()> job) { boost::asio::post(workers, std::move(job)); }});
    if (!started) fatal(started.error());
    kms_server = std::move(*started);
    if (!registry.find(cfg.kms->key))
      spdlog::warn("kms.key '{}' does not exist yet; the KMS socket answers Status with PERMISSION_DENIED until it does",
                   cfg.kms->key);
  }

  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  boost::asio::steady_timer deadline(io);
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    spdlog::info("signal {}: draining requests in flight", signal);
    (void)service_manager.notify("STOPPING=1\nSTATUS=draining requests in flight");
    // Requests still running after this long are abandoned rather than blocking shutdown.
    deadline.expires_after(cfg.limits.request_timeout + std::chrono::seconds(5));
    deadline.async_wait([&](const boost::system::error_code& ec2) {
      if (!ec2) {
        spdlog::warn("drain deadline passed; stopping");
        io.stop();
      }
    });
    if (kms_server) kms_server->stop_accepting();
    boost::system::error_code ignored;
    reload_signals.cancel(ignored);
    server.drain([&deadline, &service_manager] {
      deadline.cancel();
      service_manager.stop_watchdog();
    });
  });

  spdlog::info("custodyd {} ready: token '{}' ({} {}), {} keys, {} mechanisms; service {} admin {}", CUSTODY_VERSION,
               info->label, info->manufacturer, info->model, registry.size(), caps->count(), cfg.service_socket.path,
               cfg.admin_socket.path);
  if (kms_server) spdlog::info("kms v2 socket {} bound to key '{}'", kms_server->path(), cfg.kms->key);
  if (cfg.xks)
    spdlog::info("xks listener on {}:{} ({}) at {}/kms/xks/v1", cfg.xks->address, xks_port,
                 cfg.xks->tls ? (cfg.xks->tls->client_ca ? "TLS, client certificates required" : "TLS") : "plain HTTP",
                 cfg.xks->uri_prefix);
  if (health.degraded()) spdlog::error("key check failed; health reports degraded until it is resolved");
  // Type=notify: systemd starts the units ordered after custodyd only now that both sockets listen.
  (void)service_manager.notify("READY=1\nSTATUS=serving " + std::to_string(registry.size()) + " keys on token '" +
                               info->label + "'" + (health.degraded() ? "; DEGRADED: key check failed" : ""));
  service_manager.start_watchdog(io);

  // Runs until the listeners are closed and the last connection is done. The one top-level
  // guard: a handler that throws (a bug, or memory exhaustion) is logged and serving goes on;
  // connections and the accept loops also catch their own.
  for (;;) {
    try {
      io.run();
      break;
    } catch (const std::exception& e) {
      spdlog::error("an I/O handler failed: {}; serving on", e.what());
    } catch (...) {
      spdlog::error("an I/O handler failed with an unknown exception; serving on");
    }
  }
  // KMS calls in flight finish on the pool, so gRPC stops before the pool is joined.
  if (kms_server) kms_server->shutdown(std::chrono::seconds(5));
  workers.join();
  if (fleet) fleet->stop();
  if (leased_lifecycle) leased_lifecycle->stop();
  scheduler.stop();
  // A stop the log could not record exits non-zero, so the service manager shows it.
  bool closed = (*audit)->write({lifecycle_event("daemon.stop")});
  if (!closed) spdlog::error("could not write the daemon.stop audit record to {}", cfg.audit.path);
  if (!(*audit)->checkpoint()) {
    spdlog::error("could not write the closing audit checkpoint");
    closed = false;
  }
  (*audit)->stop();
  spdlog::info("custodyd stopped");
  return closed ? 0 : 1;
}
