// TokenRunner is a template over the call's result; this unit keeps the header compiled alone.
#include "daemon/kms/token_runner.h"
