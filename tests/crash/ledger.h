#pragma once
// What the daemon acknowledged before it was killed. Client threads write it while they run;
// after the restart every entry must still hold: an acknowledgement is a promise.
#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace custody::crash {

// A wrap or datakey answered 200: the ciphertext must unwrap to the plaintext forever after.
struct AckedCiphertext {
  std::string request_id;
  std::string key;
  std::string ciphertext;  // base64, as answered
  std::string plaintext;   // base64
  boost::json::object context;
  std::int64_t key_version = 0;
};

// A request answered with success: its audit log must hold `count` records of `type` with this
// request id and result ok.
struct AckedRecord {
  std::string request_id;
  std::string type;
  std::size_t count = 1;
};

// A dual-control request as its answers described it.
struct AckedAdminRequest {
  std::string operation;
  std::set<std::string> approved_by;
  bool executed = false;
  boost::json::value result;  // the executed request's `result`
};

// An import answered 200: the key version must exist with this KCV and be the key bytes we sent.
struct AckedImport {
  std::string request_id;
  std::string job_id;
  std::string key;
  std::int64_t version = 0;
  std::string kcv;
  std::string key_bytes;  // the 32 raw bytes wrapped into the job
};

class Ledger {
 public:
  void ciphertext(AckedCiphertext c) {
    std::lock_guard lock(mutex_);
    ciphertexts_.push_back(std::move(c));
  }
  void record(AckedRecord r) {
    std::lock_guard lock(mutex_);
    records_.push_back(std::move(r));
  }
  void proposed(const std::string& id, const std::string& operation) {
    std::lock_guard lock(mutex_);
    admin_[id].operation = operation;
  }
  void approved(const std::string& id, const std::string& operator_name) {
    std::lock_guard lock(mutex_);
    admin_[id].approved_by.insert(operator_name);
  }
  void executed(const std::string& id, boost::json::value result) {
    std::lock_guard lock(mutex_);
    admin_[id].executed = true;
    admin_[id].result = std::move(result);
  }
  void import_job(const std::string& job_id) {
    std::lock_guard lock(mutex_);
    jobs_.insert(job_id);
  }
  void imported(AckedImport i) {
    std::lock_guard lock(mutex_);
    imports_.push_back(std::move(i));
  }

  // Copies for the checks, taken once the clients have stopped.
  std::vector<AckedCiphertext> ciphertexts() const { return locked(ciphertexts_); }
  std::vector<AckedRecord> records() const { return locked(records_); }
  std::map<std::string, AckedAdminRequest> admin_requests() const { return locked(admin_); }
  std::set<std::string> import_jobs() const { return locked(jobs_); }
  std::vector<AckedImport> imports() const { return locked(imports_); }

 private:
  template <class T>
  T locked(const T& member) const {
    std::lock_guard lock(mutex_);
    return member;
  }
  mutable std::mutex mutex_;
  std::vector<AckedCiphertext> ciphertexts_;
  std::vector<AckedRecord> records_;
  std::map<std::string, AckedAdminRequest> admin_;
  std::set<std::string> jobs_;
  std::vector<AckedImport> imports_;
};

}  // namespace custody::crash
