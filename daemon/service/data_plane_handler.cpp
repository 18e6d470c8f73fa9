#include "daemon/service/data_plane_handler.h"

#include <optional>

namespace custody::service {
namespace {

// Long enough for every message the daemon writes; a caller-chosen field name cannot make a
// summary record large.
constexpr std::size_t kMaxSummaryMessage = 160;

core::Outcome<boost::json::object> run_item(const std::vector<std::string>& fields, const ItemHandler& item,
                                            const std::string& key_name, const boost::json::value& body,
                                            const core::Peer& peer, core::AuditFacts& facts) {
  facts.key = key_name;
  if (!body.is_object()) return core::fail(core::Code::invalid_argument, "each batch item must be an object");
  Fields f(body.as_object());
  for (const auto& [k, v] : body.as_object()) {
    bool known = false;
    for (const auto& a : fields) known = known || a == std::string_view(k);
    if (!known) return core::fail(core::Code::invalid_argument, "unknown field '" + std::string(k) + "'");
  }
  return item(key_name, f, peer, facts);
}

// Why an item was refused on its key, if it was a refusal (custody_denials_total).
std::optional<Denial> denial_of(ServiceContext& c, core::Operation op, const core::AuditFacts& facts,
                                const core::Error& error) {
  if (error.code == core::Code::permission_denied) return facts.key_exists ? Denial::policy : Denial::unknown_key;
  if (error.code != core::Code::failed_precondition || !facts.key) return std::nullopt;
  auto key = c.registry.find(*facts.key);
  if (!key || key->state != core::KeyState::enabled) return Denial::key_state;
  // An enabled key refuses a blob's version (retired or destroyed) while opening it, or refuses
  // to encrypt once the version has used up its encryptions. A rewrap that reached the token
  // had its blob opened: its refusal came from sealing.
  const bool sealing = op == core::Operation::wrap || op == core::Operation::datakey ||
                       (op == core::Operation::rewrap && facts.touched_key);
  return sealing ? Denial::usage_limit : Denial::version_retired;
}

// custody_key_operations_total and custody_denials_total for one item (error null: it succeeded).
void count_item(ServiceContext& c, core::Operation op, const core::AuditFacts& facts, const core::Error* error) {
  static const std::string unknown(kUnknownKeyLabel);
  const std::string& name = facts.key ? *facts.key : unknown;
  KeySeries* series = c.metrics.find_key(name);
  // The registry is asked only the first time a name comes: a name it does not know is the
  // caller's choice and must not become a label.
  if (!series) series = &c.metrics.key(facts.key_exists && c.registry.find(name) ? name : unknown);
  series->count_operation(op, error ? std::optional(error->code) : std::nullopt);
  if (!error) return;
  if (auto why = denial_of(c, op, facts, *error)) series->count_denial(*why);
}

void audit_item(Call& call, core::Operation op, const core::AuditFacts& facts, const char* result) {
  auto& e = call.record(core::operation_name(op));
  e.result = result;
  e.key = facts.key;
  e.version = facts.version;
  e.context_sha256 = facts.context_sha256;
  // The caller was told "permission denied" either way; the security team learns the truth.
  if (!facts.key_exists) e.extra["key_exists"] = false;
}

// Whether a failed item was refused before any token operation ran with the key. Only these are
// summarised; daemon and token failures (internal, unavailable, resource_exhausted) keep their
// own record even then.
bool refused_before_the_token(const core::AuditFacts& facts, const core::Error& error) {
  if (facts.touched_key) return false;
  return error.code != core::Code::resource_exhausted && error.code != core::Code::internal &&
         error.code != core::Code::unavailable;
}

// The refused items of one batch, for its one summary record: how many, and per error code the
// count, the first item's index and its message.
class RefusalSummary {
 public:
  void add(std::size_t index, const core::Error& error, const core::AuditFacts& facts) {
    key_missing_ = key_missing_ || !facts.key_exists;
    const char* code = core::code_name(error.code);
    if (!first_code_) first_code_ = code;
    ++count_;
    if (auto* entry = errors_.if_contains(code)) {
      auto& o = entry->as_object();
      o["count"] = o.at("count").as_uint64() + 1;
      return;
    }
    std::string message = error.message.substr(0, kMaxSummaryMessage);
    for (auto& c : message)
      if (c < 0x20 || c > 0x7e) c = '?';
    errors_[code] = boost::json::object{{"count", std::uint64_t{1}}, {"first_index", index}, {"first_message", message}};
  }
  void record(Call& call, core::Operation op, const std::string& key_name, std::size_t items) const {
    if (count_ == 0) return;
    auto& e = call.record(core::operation_name(op));
    e.result = *first_code_;
    e.key = key_name;
    e.extra["batch_items"] = items;
    e.extra["refused"] = count_;
    e.extra["errors"] = errors_;
    if (key_missing_) e.extra["key_exists"] = false;
  }

 private:
  bool key_missing_ = false;
  std::uint64_t count_ = 0;
  std::optional<const char*> first_code_;
  boost::json::object errors_;
};

}  // namespace

Handler data_plane_handler(ServiceContext& context, core::Operation operation, std::vector<std::string> fields,
                           ItemHandler item) {
  return [&context, operation, fields = std::move(fields), item = std::move(item)](Call& call) -> Response {
    const std::string& key_name = call.params.at(0);
    const auto& rid = call.request.request_id;
    // A fleet member whose view of the shared state is older than state.max_staleness could
    // serve a key another daemon disabled or narrowed: it fails closed until a resync succeeds.
    if (auto stale = context.health.stale()) {
      const core::Error e{core::Code::unavailable, *stale};
      const core::AuditFacts facts{key_name, {}, {}};
      audit_item(call, operation, facts, core::code_name(e.code));
      count_item(context, operation, facts, &e);
      return error_response(e, rid);
    }
    auto body = parse_body(call.request.body, context.max_json_depth);
    if (body && !core::valid_key_name(key_name))
      body = core::fail(core::Code::invalid_argument, "key names match ^[a-z0-9][a-z0-9._-]{0,62}$");
    if (!body) {
      const core::AuditFacts facts{key_name, {}, {}};
      audit_item(call, operation, facts, core::code_name(body.error().code));
      count_item(context, operation, facts, &body.error());
      return error_response(body.error(), rid);
    }
    const auto* batch = body->if_contains("batch");
    if (!batch) {
      core::AuditFacts facts;
      auto result = run_item(fields, item, key_name, *body, call.request.peer, facts);
      audit_item(call, operation, facts, result ? "ok" : core::code_name(result.error().code));
      count_item(context, operation, facts, result ? nullptr : &result.error());
      if (!result) return error_response(result.error(), rid);
      return json_response(200, *result);
    }
    if (body->size() != 1 || !batch->is_array() || batch->as_array().empty() ||
        batch->as_array().size() > kMaxBatchItems) {
      core::Error e{core::Code::invalid_argument, "a batch body is {\"batch\": [item, ...]} with 1..256 items"};
      const core::AuditFacts facts{key_name, {}, {}};
      audit_item(call, operation, facts, core::code_name(e.code));
      count_item(context, operation, facts, &e);
      return error_response(e, rid);
    }
    // Each item is authorized on its own. An item that touched the key keeps its own record;
    // refusals share one, so that batching them cannot multiply the audit log.
    RefusalSummary refused;
    boost::json::array results(zeroizing_storage());
    for (const auto& entry : batch->as_array()) {
      const std::size_t index = results.size();
      core::AuditFacts facts;
      auto result = run_item(fields, item, key_name, entry, call.request.peer, facts);
      count_item(context, operation, facts, result ? nullptr : &result.error());
      if (result) {
        audit_item(call, operation, facts, "ok");
        call.audit.back().extra["batch_index"] = index;
        results.push_back(std::move(*result));
        continue;
      }
      if (refused_before_the_token(facts, result.error())) {
        refused.add(index, result.error(), facts);
      } else {
        audit_item(call, operation, facts, core::code_name(result.error().code));
        call.audit.back().extra["batch_index"] = index;
      }
      results.push_back(boost::json::object{
          {"error", {{"code", core::code_name(result.error().code)}, {"message", result.error().message}}}});
    }
    refused.record(call, operation, key_name, results.size());
    boost::json::object out(zeroizing_storage());
    out["batch"] = std::move(results);
    return json_response(200, out);
  };
}

}  // namespace custody::service
