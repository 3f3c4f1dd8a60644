//! EC2's errors: each variant is one EC2 error code with its message; the API
//! layer turns them into EC2's XML envelope with [`Ec2Error::code`] and
//! [`Ec2Error::http_status`].

use thiserror::Error;

/// An error a tenant sees, with EC2's code. The message is written for the
/// tenant: it names the offending value the way EC2 does.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[allow(missing_docs)] // each variant is documented by its EC2 code
pub enum Ec2Error {
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    InvalidParameterCombination(String),
    #[error("The request must contain the parameter {0}")]
    MissingParameter(String),
    #[error("The action {0} is not valid for this web service.")]
    InvalidAction(String),
    #[error("{0}")]
    InvalidGroupNotFound(String),
    #[error("The security group '{0}' already exists")]
    InvalidGroupDuplicate(String),
    #[error("Invalid id: \"{0}\" (expecting \"sg-...\")")]
    MalformedGroupId(String),
    #[error("Invalid id: \"{0}\"")]
    MalformedId(String),
    #[error("Invalid id: \"{0}\"")]
    MalformedInstanceId(String),
    #[error("Invalid id: \"{0}\"")]
    MalformedImageId(String),
    #[error("Invalid id: \"{0}\"")]
    MalformedAllocationId(String),
    #[error("Invalid id: \"{0}\"")]
    MalformedAssociationId(String),
    #[error("Invalid address: '{0}'")]
    MalformedAddress(String),
    #[error("{0}")]
    InvalidPermissionDuplicate(String),
    #[error("{0}")]
    InvalidPermissionNotFound(String),
    #[error("The address '{0}' does not belong to you.")]
    InvalidAddressNotFound(String),
    #[error("The allocation ID '{0}' does not exist")]
    InvalidAllocationIdNotFound(String),
    #[error("The association ID '{0}' does not exist")]
    InvalidAssociationIdNotFound(String),
    #[error("The instance ID '{0}' does not exist")]
    InvalidInstanceIdNotFound(String),
    #[error("The image id '[{0}]' does not exist")]
    InvalidImageIdNotFound(String),
    #[error("The maximum number of addresses has been reached.")]
    AddressLimitExceeded,
    #[error("There are not enough free addresses in the public address pool to satisfy the request.")]
    InsufficientAddressCapacity,
    #[error(
        "There are not enough free addresses in subnet '{0}' to satisfy the requested number of instances."
    )]
    InsufficientFreeAddressesInSubnet(String),
    #[error("Address {0} is in use.")]
    InvalidIpAddressInUse(String),
    #[error("{0}")]
    ResourceAlreadyAssociated(String),
    #[error("{0}")]
    IncorrectInstanceState(String),
    #[error("{0}")]
    DependencyViolation(String),
    #[error("{0}")]
    CannotDelete(String),
    #[error("Client token '{0}' was used before with different parameters.")]
    IdempotentParameterMismatch(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("The ID '{0}' is not valid")]
    InvalidId(String),
    #[error("Request would have succeeded, but DryRun flag is set.")]
    DryRunOperation,
    #[error("You are not authorized to perform this operation.")]
    UnauthorizedOperation,
    #[error("AWS was not able to validate the provided access credentials")]
    AuthFailure,
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    SignatureDoesNotMatch,
    #[error("{0}")]
    RequestExpired(String),
    #[error("Request is missing Authentication Token")]
    MissingAuthenticationToken,
    #[error("{0}")]
    IncompleteSignature(String),
    #[error("An internal error has occurred")]
    InternalError,
    #[error("The service is unavailable: {0}")]
    Unavailable(String),
    #[error("Request limit exceeded.")]
    RequestLimitExceeded,
}

impl Ec2Error {
    /// EC2's error code, as put in `<Code>`.
    pub fn code(&self) -> &'static str {
        use Ec2Error::*;
        match self {
            InvalidParameterValue(_) => "InvalidParameterValue",
            InvalidParameterCombination(_) => "InvalidParameterCombination",
            MissingParameter(_) => "MissingParameter",
            InvalidAction(_) => "InvalidAction",
            InvalidGroupNotFound(_) => "InvalidGroup.NotFound",
            InvalidGroupDuplicate(_) => "InvalidGroup.Duplicate",
            MalformedGroupId(_) => "InvalidGroupId.Malformed",
            MalformedId(_) => "InvalidID",
            MalformedInstanceId(_) => "InvalidInstanceID.Malformed",
            MalformedImageId(_) => "InvalidAMIID.Malformed",
            MalformedAllocationId(_) => "InvalidAllocationID.Malformed",
            MalformedAssociationId(_) => "InvalidAssociationID.Malformed",
            MalformedAddress(_) => "InvalidAddress.Malformed",
            InvalidPermissionDuplicate(_) => "InvalidPermission.Duplicate",
            InvalidPermissionNotFound(_) => "InvalidPermission.NotFound",
            InvalidAddressNotFound(_) => "InvalidAddress.NotFound",
            InvalidAllocationIdNotFound(_) => "InvalidAllocationID.NotFound",
            InvalidAssociationIdNotFound(_) => "InvalidAssociationID.NotFound",
            InvalidInstanceIdNotFound(_) => "InvalidInstanceID.NotFound",
            InvalidImageIdNotFound(_) => "InvalidAMIID.NotFound",
            AddressLimitExceeded => "AddressLimitExceeded",
            InsufficientAddressCapacity => "InsufficientAddressCapacity",
            InsufficientFreeAddressesInSubnet(_) => "InsufficientFreeAddressesInSubnet",
            InvalidIpAddressInUse(_) => "InvalidIPAddress.InUse",
            ResourceAlreadyAssociated(_) => "Resource.AlreadyAssociated",
            IncorrectInstanceState(_) => "IncorrectInstanceState",
            DependencyViolation(_) => "DependencyViolation",
            CannotDelete(_) => "CannotDelete",
            IdempotentParameterMismatch(_) => "IdempotentParameterMismatch",
            UnsupportedOperation(_) => "UnsupportedOperation",
            InvalidId(_) => "InvalidID",
            DryRunOperation => "DryRunOperation",
            UnauthorizedOperation => "UnauthorizedOperation",
            AuthFailure => "AuthFailure",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            RequestExpired(_) => "RequestExpired",
            MissingAuthenticationToken => "MissingAuthenticationToken",
            IncompleteSignature(_) => "IncompleteSignature",
            InternalError => "InternalError",
            Unavailable(_) => "Unavailable",
            RequestLimitExceeded => "RequestLimitExceeded",
        }
    }

    /// The HTTP status EC2 answers this error with.
    pub fn http_status(&self) -> u16 {
        use Ec2Error::*;
        match self {
            DryRunOperation => 412,
            AuthFailure | MissingAuthenticationToken => 401,
            UnauthorizedOperation | SignatureDoesNotMatch => 403,
            InternalError => 500,
            Unavailable(_) | RequestLimitExceeded => 503,
            _ => 400,
        }
    }
}

/// An operator's mistake in `flowgate admin` (or a conflict with the
/// current state), reported with a message and a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdminError {
    /// Nothing of that kind has this name or id.
    #[error("{kind} {name} does not exist")]
    NotFound {
        /// What was looked for (account, image, pool, …).
        kind: &'static str,
        /// The name or id given.
        name: String,
    },
    /// Something of that kind with this name or id exists already.
    #[error("{kind} {name} exists already")]
    Duplicate {
        /// What was to be created.
        kind: &'static str,
        /// The conflicting name or id.
        name: String,
    },
    /// The value does not make sense (a gateway outside its CIDR, …).
    #[error("{0}")]
    Invalid(String),
    /// The object is still used by others.
    #[error("{0}")]
    InUse(String),
}
