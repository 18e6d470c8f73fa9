#include "daemon/service/json_body.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <cstdlib>
#include <new>
#include <optional>
#include <utility>
#include <vector>

#include "common/base64.h"

namespace custody::service {
namespace {

// malloc's alignment covers everything Boost.JSON allocates (at most alignof(max_align_t)).
class ZeroizingResource final : public boost::json::memory_resource {
  void* do_allocate(std::size_t n, std::size_t) override {
    void* p = std::malloc(n ? n : 1);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void* p, std::size_t n, std::size_t) override {
    OPENSSL_cleanse(p, n);
    std::free(p);
  }
  bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }
};

// Builds the value like boost::json::parser, in zeroizing storage, and refuses an object with a
// member name twice: boost::json::object keeps the last of duplicates silently, so they must be
// caught while the members are still separate, before the object is made (on_object_end).
// Member names of the open objects are kept in one stack: a level's names are a suffix of it.
// Request bodies have a few members: the stacks live inline, with no allocation per parse.
class DuplicateRefusingBuilder {
  using error_code = boost::system::error_code;
  using string_view = boost::json::string_view;
  using Name = std::pair<std::size_t, std::size_t>;  // offset and length in bytes_

 public:
  static constexpr std::size_t max_object_size = boost::json::object::max_size();
  static constexpr std::size_t max_array_size = boost::json::array::max_size();
  static constexpr std::size_t max_key_size = boost::json::string::max_size();
  static constexpr std::size_t max_string_size = boost::json::string::max_size();

  DuplicateRefusingBuilder(unsigned char* scratch, std::size_t scratch_size)
      : values_(zeroizing_storage(), scratch, scratch_size) {
    values_.reset(zeroizing_storage());
  }

  // "'name'", or "'name' in 'parent'" for a nested object; empty while none was found.
  const std::string& duplicate() const { return duplicate_; }
  boost::json::value release() { return values_.release(); }
  // Drops partial values and wipes the names (all of the buffer: inline or truncated bytes too).
  void clear() {
    values_.reset(zeroizing_storage());
    names_.clear();
    OPENSSL_cleanse(bytes_.data(), bytes_used_);
    bytes_.clear();
    bytes_used_ = 0;
  }

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_object_begin(error_code&) {
    levels_.push_back(names_.size());
    return true;
  }
  bool on_object_end(std::size_t n, error_code& ec) {
    const std::size_t first = levels_.back();
    levels_.pop_back();
    if (auto twice = repeated_name(first)) {
      duplicate_ = quoted(*twice);
      if (!levels_.empty() && first > levels_.back())  // the parent's last name is the one it sits under
        duplicate_ += " in " + quoted(name_at(first - 1));
      ec = boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
      return false;
    }
    names_.resize(first);
    values_.push_object(n);
    return true;
  }
  bool on_array_begin(error_code&) { return true; }
  bool on_array_end(std::size_t n, error_code&) {
    values_.push_array(n);
    return true;
  }
  bool on_key_part(string_view s, std::size_t, error_code&) {
    if (!key_started_) start_name();
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    bytes_used_ = std::max(bytes_used_, bytes_.size());
    values_.push_chars(s);
    return true;
  }
  bool on_key(string_view s, std::size_t, error_code&) {
    if (!key_started_) start_name();
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    bytes_used_ = std::max(bytes_used_, bytes_.size());
    names_.back().second = bytes_.size() - names_.back().first;
    key_started_ = false;
    values_.push_key(s);
    return true;
  }
  bool on_string_part(string_view s, std::size_t, error_code&) {
    values_.push_chars(s);
    return true;
  }
  bool on_string(string_view s, std::size_t, error_code&) {
    values_.push_string(s);
    return true;
  }
  bool on_number_part(string_view, error_code&) { return true; }
  bool on_int64(std::int64_t i, string_view, error_code&) {
    values_.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, string_view, error_code&) {
    values_.push_uint64(u);
    return true;
  }
  bool on_double(double d, string_view, error_code&) {
    values_.push_double(d);
    return true;
  }
  bool on_bool(bool b, error_code&) {
    values_.push_bool(b);
    return true;
  }
  bool on_null(error_code&) {
    values_.push_null();
    return true;
  }
  bool on_comment_part(string_view, error_code&) { return true; }
  bool on_comment(string_view, error_code&) { return true; }

 private:
  void start_name() {
    // The names of finished objects are gone from names_; their bytes can go too.
    bytes_.resize(names_.empty() ? 0 : names_.back().first + names_.back().second);
    names_.emplace_back(bytes_.size(), 0);
    key_started_ = true;
  }
  std::string_view name_at(std::size_t i) const { return {bytes_.data() + names_[i].first, names_[i].second}; }

  // A name that occurs twice among names_[first..]. Objects in requests have a handful of
  // members, compared pairwise; a large one is sorted first, so no body costs quadratic time.
  std::optional<std::string_view> repeated_name(std::size_t first) {
    const std::size_t count = names_.size() - first;
    if (count <= 16) {
      for (std::size_t i = first; i < names_.size(); ++i)
        for (std::size_t j = i + 1; j < names_.size(); ++j)
          if (name_at(i) == name_at(j)) return name_at(i);
      return std::nullopt;
    }
    auto begin = names_.begin() + static_cast<std::ptrdiff_t>(first);
    std::sort(begin, names_.end(), [&](const Name& a, const Name& b) {
      return std::string_view(bytes_.data() + a.first, a.second) < std::string_view(bytes_.data() + b.first, b.second);
    });
    for (std::size_t i = first + 1; i < names_.size(); ++i)
      if (name_at(i - 1) == name_at(i)) return name_at(i);
    return std::nullopt;
  }

  // Quoted for an error message, and cut short: a name can be as long as the body.
  static std::string quoted(std::string_view name) {
    constexpr std::size_t kShown = 64;
    if (name.size() <= kShown) return "'" + std::string(name) + "'";
    return "'" + std::string(name.substr(0, kShown)) + "...'";
  }

  boost::json::value_stack values_;
  // The member names of the open objects, back to back; wiped when it grows and by clear().
  boost::container::small_vector<char, 512, ZeroizingAllocator<char>> bytes_;
  std::size_t bytes_used_ = 0;  // how far bytes_ was ever filled: what clear() wipes
  boost::container::small_vector<Name, 32> names_;          // those names; each open object's are a suffix
  boost::container::small_vector<std::size_t, 16> levels_;  // where each open object's names start in names_
  bool key_started_ = false;
  std::string duplicate_;
};

}  // namespace

boost::json::storage_ptr zeroizing_storage() {
  static ZeroizingResource resource;
  return boost::json::storage_ptr(&resource);
}

boost::json::string secret_base64(std::span<const std::uint8_t> data) {
  boost::json::string s(zeroizing_storage());
  s.resize(base64_encoded_size(data.size()));
  base64_encode_into(data, s.data());
  return s;
}

core::Outcome<boost::json::object> parse_body(std::string_view body, unsigned max_depth) {
  boost::json::parse_options options;
  options.max_depth = max_depth;
  // The builder's scratch (strings being assembled) lives here or in zeroizing storage; both are
  // wiped when the parse is over.
  unsigned char scratch[512];  // a request's few values; more spill to zeroizing storage
  boost::json::basic_parser<DuplicateRefusingBuilder> parser(options, scratch, sizeof scratch);
  auto& builder = parser.handler();
  auto outcome = [&]() -> core::Outcome<boost::json::object> {
    boost::system::error_code ec;
    const std::size_t consumed = parser.write_some(false, body.data(), body.size(), ec);
    if (!builder.duplicate().empty())
      return core::fail(core::Code::invalid_argument, "duplicate field " + builder.duplicate());
    if (!ec && consumed < body.size()) ec = boost::json::error::extra_data;
    if (ec == boost::json::error::too_deep)
      return core::fail(core::Code::invalid_argument, "the JSON body nests deeper than " + std::to_string(max_depth));
    if (ec) return core::fail(core::Code::invalid_argument, "the body is not valid JSON: " + ec.message());
    boost::json::value v = builder.release();
    if (!v.is_object()) return core::fail(core::Code::invalid_argument, "the body must be a JSON object");
    return std::move(v.as_object());
  }();
  builder.clear();
  OPENSSL_cleanse(scratch, sizeof scratch);
  return outcome;
}

core::Outcome<void> Fields::only(std::initializer_list<std::string_view> allowed) const {
  for (const auto& [k, v] : object_) {
    bool known = false;
    for (auto a : allowed) known = known || a == std::string_view(k);
    if (!known) return core::fail(core::Code::invalid_argument, "unknown field '" + name_of(k) + "'");
  }
  return {};
}

core::Outcome<SecureBytes> Fields::base64(std::string_view name, std::size_t min, std::size_t max, bool required) const {
  const auto* v = get(name);
  if (!v || v->is_null()) {
    if (required) return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' is required");
    return SecureBytes{};
  }
  if (!v->is_string()) return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be a base64 string");
  const auto& s = v->as_string();
  // Reject before decoding anything absurdly long.
  if (s.size() > (max + 2) / 3 * 4)
    return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be " + std::to_string(min) + ".." +
                                                        std::to_string(max) + " bytes");
  auto bytes = base64_decode(std::string_view(s.data(), s.size()));
  if (!bytes) return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' is not valid base64 (standard alphabet, with padding)");
  if (bytes->size() < min || bytes->size() > max)
    return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be " + std::to_string(min) + ".." +
                                                        std::to_string(max) + " bytes");
  return std::move(*bytes);
}

core::Outcome<std::optional<std::uint64_t>> Fields::number(std::string_view name, std::uint64_t min, std::uint64_t max) const {
  const auto* v = get(name);
  if (!v || v->is_null()) return std::optional<std::uint64_t>{};
  std::optional<std::uint64_t> n;
  if (v->is_int64() && v->as_int64() >= 0) n = static_cast<std::uint64_t>(v->as_int64());
  else if (v->is_uint64()) n = v->as_uint64();
  if (!n || *n < min || *n > max)
    return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be a whole number from " +
                                                        std::to_string(min) + " to " + std::to_string(max));
  return n;
}

core::Outcome<bool> Fields::boolean(std::string_view name, bool fallback) const {
  const auto* v = get(name);
  if (!v || v->is_null()) return fallback;
  if (!v->is_bool()) return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be true or false");
  return v->as_bool();
}

core::Outcome<std::string> Fields::string(std::string_view name) const {
  const auto* v = get(name);
  if (!v || !v->is_string() || v->as_string().empty())
    return core::fail(core::Code::invalid_argument, "'" + name_of(name) + "' must be a non-empty string");
  return std::string(v->as_string());
}

}  // namespace custody::service
