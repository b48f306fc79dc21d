/**
 * How far in the past a jti revocation's `exp` may lie before the broker refuses it (400 invalid_request): the
 * clock skew allowed between the broker and whatever accepts its tokens, 60 s as elsewhere in the broker. Here
 * so that a client (provision teardown) can leave out what the broker would refuse.
 */
export const EXP_SKEW_SECONDS = 60
