/**
 * Wire constants of the pilot exchange on POST /token (docs/pilots-script.md): a provisioning run obtains an
 * enrolment credential, each node of the SLURM job redeems it once for an IDTOKEN, then renews that IDTOKEN.
 */
export const PILOT_ENROLMENT_TOKEN_TYPE = 'urn:condor-token-broker:token-type:pilot-enrolment'
