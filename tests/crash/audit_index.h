#pragma once
// Every record of a (possibly rotated) audit log, looked up by request id and by admin request.
#include <boost/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace custody::crash {

// The files of the log at `path`, oldest first: the rotated "<path>.<seq>" files, then `path`.
std::vector<std::string> audit_files(const std::string& path);

class AuditIndex {
 public:
  explicit AuditIndex(const std::string& path);
  std::size_t size() const { return records_.size(); }
  // Records of this type with this request id and result ok.
  std::size_t ok_records(const std::string& request_id, const std::string& type) const;
  // Whether a record of this type with result ok names the admin request (and the operator, if
  // not empty).
  bool names_admin_request(const std::string& admin_request, const std::string& type, const std::string& operator_name = "") const;

 private:
  std::vector<boost::json::object> records_;
  std::unordered_multimap<std::string, std::size_t> by_request_id_, by_admin_request_;
};

}  // namespace custody::crash
