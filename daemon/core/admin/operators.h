#pragma once
// The operators who approve admin requests, each with a public key (EC P-256 or RSA ≥ 2048),
// and the check of an approval: a signature over SHA-256 of the challenge bytes (CONTRACT §7),
// ECDSA (DER) or RSA-PSS with SHA-256 and MGF1-SHA-256.
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/core/error.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace custody::core {

struct Operator {
  std::string name;
  std::shared_ptr<EVP_PKEY> key;
  // hex SHA-256 of the canonical SubjectPublicKeyInfo DER (EC: named curve, uncompressed point),
  // the same whichever encoding of the key the configuration gave
  std::string key_id;
};

// One operator's public key as configured; origin (e.g. its file) is named in messages when set.
struct OperatorKey {
  std::string name;
  std::string pem;
  std::string origin;
};

class OperatorSet {
 public:
  // The message names the operator that is wrong (and its key's origin).
  static Expected<OperatorSet, std::string> from_keys(const std::vector<OperatorKey>& operators);
  // name → PEM text of the public key.
  static Expected<OperatorSet, std::string> from_pem(const std::vector<std::pair<std::string, std::string>>& operators);

  const Operator* find(std::string_view name) const;
  const std::vector<Operator>& all() const { return operators_; }
  // invalid_argument for a signature that is not even well-formed, permission_denied for one
  // that does not verify.
  static Outcome<void> verify(const Operator& op, std::string_view challenge, std::span<const std::uint8_t> signature);

 private:
  std::vector<Operator> operators_;
};

}  // namespace custody::core
