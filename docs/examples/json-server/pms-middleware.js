// What a real deployment of json-server adds (docs/pms-rest.md): a modification
// time on every write, and validation. json-server itself stamps nothing and
// accepts any body.
//
//   json-server --middlewares pms-middleware.js db.json
//
// - POST, PUT and PATCH set `updatedAt` (ISO 8601 UTC, milliseconds) on the
//   record; POST also sets `createdAt`. A client cannot set `updatedAt`.
// - A `displayName` or `title` longer than 80 characters is refused with
//   422 {"error": {"message": "..."}} and nothing is stored.
const MAX_NAME = 80;

module.exports = (req, res, next) => {
  const writes = ['POST', 'PUT', 'PATCH'];
  if (!writes.includes(req.method) || !req.body || typeof req.body !== 'object') {
    return next();
  }
  for (const field of ['displayName', 'title']) {
    const value = req.body[field];
    if (typeof value === 'string' && value.length > MAX_NAME) {
      return res.status(422).json({
        error: { message: `${field} is longer than ${MAX_NAME} characters (${value.length})` },
      });
    }
  }
  const now = new Date().toISOString();
  if (req.method === 'POST') {
    req.body.createdAt = now;
  }
  req.body.updatedAt = now;
  next();
};
