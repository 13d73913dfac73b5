import type pg from "pg";

/*
 * Asking the server what a statement takes and returns, without running it: Parse + Describe
 * (statement) + Sync over the extended protocol, through node-postgres's Submittable hook.
 */

export interface DescribedField {
  name: string;
  /** OID of the table the column comes from, or 0 for a computed column. */
  tableID: number;
  /** attnum of that column, or 0. */
  columnID: number;
  dataTypeID: number;
}

export interface Described {
  /** Type OIDs of $1..$n. */
  paramTypes: number[];
  /** The result columns; empty when the statement returns no rows (NoData). */
  fields: DescribedField[];
}

/** The error the server sent (pg's DatabaseError): `position` is a 1-based character index. */
export interface ServerError extends Error {
  code?: string;
  position?: string;
  hint?: string;
}

/** The parts of pg's (untyped) Connection this uses. */
interface Connection {
  parse(msg: { text: string; types: number[] }): void;
  describe(msg: { type: "S" | "P"; name?: string }): void;
  sync(): void;
  on(event: string, listener: (msg: never) => void): void;
  removeListener(event: string, listener: (msg: never) => void): void;
}

class DescribeStatement {
  private connection: Connection | undefined;
  private paramTypes: number[] = [];
  private fields: DescribedField[] = [];
  private settled = false;

  constructor(
    private readonly text: string,
    private readonly resolve: (d: Described) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  private readonly onParameterDescription = (msg: { dataTypeIDs: number[] }) => {
    this.paramTypes = [...msg.dataTypeIDs];
  };

  private readonly onNoData = () => {
    this.fields = [];
  };

  /** Called by pg when this is the active query. */
  submit(connection: Connection): void {
    this.connection = connection;
    connection.on("parameterDescription", this.onParameterDescription);
    connection.on("noData", this.onNoData);
    connection.parse({ text: this.text, types: [] });
    connection.describe({ type: "S" });
    connection.sync();
  }

  private detach(): void {
    this.connection?.removeListener("parameterDescription", this.onParameterDescription);
    this.connection?.removeListener("noData", this.onNoData);
    this.connection = undefined;
  }

  handleRowDescription(msg: { fields: DescribedField[] }): void {
    this.fields = msg.fields.map((f) => ({
      name: f.name,
      tableID: f.tableID,
      columnID: f.columnID,
      dataTypeID: f.dataTypeID,
    }));
  }

  /** The server's ErrorResponse (it then skips to Sync), or a connection failure. */
  handleError(err: Error): void {
    this.detach();
    if (this.settled) return;
    this.settled = true;
    this.reject(err);
  }

  handleReadyForQuery(): void {
    this.detach();
    if (this.settled) return;
    this.settled = true;
    this.resolve({ paramTypes: this.paramTypes, fields: this.fields });
  }

  // Nothing is executed, so none of these arrive; pg calls them if they do.
  handleDataRow(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
}

/**
 * Describes `text` on `client`: its parameter types and result columns. Rejects with the server's
 * error (a ServerError) when the statement does not prepare, e.g. an unknown column.
 */
export function describeStatement(client: pg.ClientBase, text: string): Promise<Described> {
  return new Promise<Described>((resolve, reject) => {
    const submittable = new DescribeStatement(text, resolve, reject);
    (client as unknown as { query(s: DescribeStatement): unknown }).query(submittable);
  });
}
