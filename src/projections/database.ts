/** The read side's tables, composed from each read model's own table file. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface ReadDatabase {}
