// The subset of Apache IoTDB's client RPC (client.thrift, common.thrift)
// that edgepipe serves, written for edgepipe from the field ids in
// shared/reference/iotdb-client-rpc.md section 5. Field ids and types are
// IoTDB's; request fields are all optional here so that a client omitting
// one gets a status naming it instead of a decode failure.
//
// Regenerate src/generated/rpc.rs with protocol/gen.sh (thrift-compiler 0.17).

namespace rs edgepipe

struct TEndPoint {
  1: required string ip
  2: required i32 port
}

struct TSStatus {
  1: required i32 code
  2: optional string message
  3: optional list<TSStatus> subStatus
  4: optional TEndPoint redirectNode
  5: optional bool needRetry
}

struct TSOpenSessionReq {
  1: optional i32 client_protocol
  2: optional string zoneId
  3: optional string username
  4: optional string password
  5: optional map<string, string> configuration
}

struct TSOpenSessionResp {
  1: required TSStatus status
  2: required i32 serverProtocolVersion
  3: optional i64 sessionId
  4: optional map<string, string> configuration
}

struct TSCloseSessionReq {
  1: optional i64 sessionId
}

struct TSSetTimeZoneReq {
  1: optional i64 sessionId
  2: optional string timeZone
}

struct TSGetTimeZoneResp {
  1: required TSStatus status
  2: required string timeZone
}

struct TSExecuteStatementReq {
  1: optional i64 sessionId
  2: optional string statement
  3: optional i64 statementId
  4: optional i32 fetchSize
  5: optional i64 timeout
  6: optional bool enableRedirectQuery
  7: optional bool jdbcQuery
}

struct TSExecuteStatementResp {
  1: required TSStatus status
  2: optional i64 queryId
  3: optional list<string> columns
  4: optional string operationType
  5: optional bool ignoreTimeStamp
  6: optional list<string> dataTypeList
  9: optional map<string, i32> columnNameIndexMap
  10: optional list<string> sgColumns
  13: optional list<binary> queryResult
  14: optional bool moreData
  15: optional string database
  16: optional bool tableModel
}

struct TSFetchResultsReq {
  1: optional i64 sessionId
  2: optional string statement
  3: optional i32 fetchSize
  4: optional i64 queryId
  5: optional bool isAlign
  6: optional i64 timeout
  7: optional i64 statementId
}

struct TSFetchResultsResp {
  1: required TSStatus status
  2: required bool hasResultSet
  3: required bool isAlign
  6: optional list<binary> queryResult
  7: optional bool moreData
}

struct TSCloseOperationReq {
  1: optional i64 sessionId
  2: optional i64 queryId
  3: optional i64 statementId
  4: optional string preparedStatementName
}

struct TSInsertTabletReq {
  1: optional i64 sessionId
  2: optional string prefixPath
  3: optional list<string> measurements
  4: optional binary values
  5: optional binary timestamps
  6: optional list<i32> types
  7: optional i32 size
  8: optional bool isAligned
  9: optional bool writeToTable
}

struct TSInsertTabletsReq {
  1: optional i64 sessionId
  2: optional list<string> prefixPaths
  3: optional list<list<string>> measurementsList
  4: optional list<binary> valuesList
  5: optional list<binary> timestampsList
  6: optional list<list<i32>> typesList
  7: optional list<i32> sizeList
  8: optional bool isAligned
}

struct TSInsertRecordReq {
  1: optional i64 sessionId
  2: optional string prefixPath
  3: optional list<string> measurements
  4: optional binary values
  5: optional i64 timestamp
  6: optional bool isAligned
  7: optional bool isWriteToTable
}

struct TSInsertRecordsReq {
  1: optional i64 sessionId
  2: optional list<string> prefixPaths
  3: optional list<list<string>> measurementsList
  4: optional list<binary> valuesList
  5: optional list<i64> timestamps
  6: optional bool isAligned
}

struct TSInsertRecordsOfOneDeviceReq {
  1: optional i64 sessionId
  2: optional string prefixPath
  3: optional list<list<string>> measurementsList
  4: optional list<binary> valuesList
  5: optional list<i64> timestamps
  6: optional bool isAligned
}

struct TSInsertStringRecordReq {
  1: optional i64 sessionId
  2: optional string prefixPath
  3: optional list<string> measurements
  4: optional list<string> values
  5: optional i64 timestamp
  6: optional bool isAligned
  7: optional i64 timeout
}

// IoTDB 1.2 pipe transfer (pipeTransfer(-1: TPipeTransferReq req)).
struct TPipeTransferReq {
  1: optional i8 version
  2: optional i16 type
  3: optional binary body
}

struct TPipeTransferResp {
  1: required TSStatus status
  2: optional binary body
}

// IoTDB 1.0/1.1 legacy sync (client.thrift, identical in 1.1 and 1.2):
//   TSStatus handshake(TSyncIdentityInfo info)            -- argument at field id -1
//   TSStatus sendPipeData(1: binary buff)
//   TSStatus sendFile(1: TSyncTransportMetaInfo metaInfo, 2: binary buff)
// IoTDB declares every field of these two structs required.
struct TSyncIdentityInfo {
  1: optional string pipeName
  2: optional i64 createTime
  3: optional string version
  4: optional string database
}

struct TSyncTransportMetaInfo {
  1: optional string fileName
  2: optional i64 startIndex
}

// The argument structs of sendPipeData and sendFile as they travel (thrift
// writes a call's arguments as one struct); not IoTDB names.
struct TSendPipeDataArgs {
  1: optional binary buff
}

struct TSendFileArgs {
  1: optional TSyncTransportMetaInfo metaInfo
  2: optional binary buff
}
